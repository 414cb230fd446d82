"""Capture commands: ``log import``, ``log mark-abandoned``, ``log opt-out/opt-in/forget``,
``feedback`` and ``stats``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, err_console, load, load_read_only
from tuneloop.errors import InputError, Interrupted

if TYPE_CHECKING:
    from tuneloop.capture.client import Tuneloop

PROGRESS_MIN_BYTES = 1_000_000  # smaller files import in a blink: no bar
MAX_ERRORS_SHOWN = 20
EXIT_SOME_SKIPPED = 1  # some lines were bad; the others are stored
EXIT_NOTHING_DONE = 2  # no line could be stored (also the exit code of any error)
BAR_WIDTH = 40

log_app = typer.Typer(
    help="Bring logged calls in, and manage what is collected.", no_args_is_help=True
)


def _client(config_path: Path | None) -> Tuneloop:
    """Imported here so ``tuneloop --help`` does not load the capture stack."""
    from tuneloop.capture.client import Tuneloop

    config, store = load(config_path)
    return Tuneloop(config, store)


@log_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A dataset file or folder in any supported format.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="openai, together, dpo, alpaca, sharegpt, ... (detected)."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task of lines that set none.")] = None,
    source: Annotated[str, typer.Option(help="Source of lines that set none.")] = "import",
    strict: Annotated[
        bool, typer.Option(help="Refuse the whole file, storing nothing, if any line is bad.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Import calls from a JSONL file (tuneloop or OpenAI fine-tuning lines).

    Lines already stored (same id, or same content) are not stored again, so an interrupted
    import can simply be run again. Bad lines are listed (FILE:LINE: reason) and skipped.
    Exit code: 0 every line is stored, 1 some lines were skipped, 2 nothing could be imported.
    """
    from tuneloop.capture.importer import import_jsonl
    from tuneloop.store import stop_on_signals

    if not file.exists():
        raise InputError(f"cannot read {file}: no such file or folder")
    with _client(config) as client:
        # Bytes are the measure of a JSONL file; other formats report entries, with no total.
        size = file.stat().st_size if file.suffix.lower() in (".jsonl", ".ndjson") else 0
        show = console.is_terminal and size >= PROGRESS_MIN_BYTES
        columns = (TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
        with (
            Progress(*columns, console=console, transient=True, disable=not show) as progress,
            stop_on_signals(f"import of {file}"),
        ):
            bar = progress.add_task("import", total=size or None)
            try:
                report = import_jsonl(
                    client,
                    file,
                    task=task,
                    source=source,
                    fmt=fmt,
                    strict=strict,
                    progress=lambda done: progress.update(bar, completed=done),
                )
            except Interrupted as exc:
                raise Interrupted(
                    f"{exc}; what was stored stays stored, and running the same command again "
                    "finishes the import (lines already stored are skipped)",
                    signal_number=exc.signal_number,
                ) from None
    console.print(report.summary(), highlight=False, soft_wrap=True)
    for error in report.errors[:MAX_ERRORS_SHOWN]:
        err_console.print(f"  [red]skipped[/red] {error}", highlight=False, soft_wrap=True)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        err_console.print(f"  … and {len(report.errors) - MAX_ERRORS_SHOWN} more bad lines")
    if report.skipped:
        done = report.stored + report.opted_out
        raise typer.Exit(EXIT_SOME_SKIPPED if done else EXIT_NOTHING_DONE)


@log_app.command("mark-abandoned")
def mark_abandoned_command(config: ConfigOption = None) -> None:
    """Mark silent calls abandoned (run it on a schedule).

    Silent: no feedback and no later call in the session for capture.abandon_after_s.
    """
    with _client(config) as client:
        count = client.mark_abandoned()
    console.print(f"marked {count} interaction(s) abandoned")


@log_app.command("opt-out")
def opt_out_command(
    tenant: Annotated[str, typer.Argument(help="Tenant to stop collecting.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept with the opt-out).")] = None,
    config: ConfigOption = None,
) -> None:
    """Stop collecting a tenant and delete everything stored of theirs.

    Their interactions, feedback and eval results are deleted and their examples removed from
    exported dataset files; model versions trained on that data are listed.
    """
    with _client(config) as client:
        report = client.opt_out(tenant, reason)
    console.print(f"tenant {tenant!r} opted out", highlight=False)
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)


@log_app.command("forget")
def forget_command(
    tenant: Annotated[str, typer.Argument(help="Tenant whose data to delete.")],
    config: ConfigOption = None,
) -> None:
    """Delete everything stored of a tenant, without opting them out (see opt-out).

    Interactions, feedback, eval results and their examples in exported dataset files; model
    versions trained on that data are listed so they can be retrained.
    """
    with _client(config) as client:
        report = client.forget(tenant)
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)


@log_app.command("opt-in")
def opt_in_command(
    tenant: Annotated[str, typer.Argument(help="Tenant to collect again.")],
    config: ConfigOption = None,
) -> None:
    """Collect a tenant again."""
    with _client(config) as client:
        removed = client.opt_in(tenant)
    console.print(
        f"tenant {tenant!r} " + ("is collected again" if removed else "was not opted out"),
        highlight=False,
    )


def feedback_command(
    interaction_id: Annotated[str, typer.Argument(metavar="ID", help="Interaction id.")],
    kind: Annotated[
        str,
        typer.Argument(
            help="thumbs_up, thumbs_down, correction, saved, "
            "saved_with_edits, validation, abandoned, "
            "regenerated."
        ),
    ],
    score: Annotated[float | None, typer.Option(help="Validation score in [0, 1].")] = None,
    edited_file: Annotated[
        Path | None, typer.Option(help="File with the user's edited output ('-' for stdin).")
    ] = None,
    comment: Annotated[str | None, typer.Option(help="Free-text note.")] = None,
    config: ConfigOption = None,
) -> None:
    """Record feedback on a logged call and print its reward."""
    edited = _read_edited(edited_file) if edited_file is not None else None
    with _client(config) as client:
        with client.batch() as batch:
            reward = batch.feedback(
                interaction_id, kind, score=score, edited=edited, comment=comment
            )
        interaction = client.get(interaction_id)
    console.print(
        f"{kind}: reward {reward:+.2f}; interaction reward "
        f"{_fmt(interaction.reward)}, quality {interaction.quality}/10",
        highlight=False,
    )


def _read_edited(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read --edited-file {path}: {exc}") from None


def stats_command(
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """What has been collected: counts, feedback, reward and quality, exportable share."""
    from tuneloop.capture.stats import collection_stats

    settings, store = load_read_only(config)
    try:
        stats = collection_stats(store, task, curate=settings.curate)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    _print_stats(stats)


def _print_stats(stats: dict[str, Any]) -> None:
    export = stats["export"]
    console.print(
        f"[bold]{stats['interactions']}[/bold] interactions, {stats['with_feedback']} with "
        f"feedback; mean reward {_fmt(stats['reward']['mean'])}, mean quality "
        f"{_fmt(stats['quality']['mean'], signed=False)}; exportable "
        f"(quality ≥ {export['min_quality']}, reward ≥ {export['min_reward']}): "
        f"[bold]{export['passing']}[/bold]"
        + (f" ({export['share']:.0%})" if export["share"] is not None else "")
    )
    counts = Table(title="Counts")
    counts.add_column("by")
    counts.add_column("value")
    counts.add_column("count", justify="right")
    for label, key in (("task", "by_task"), ("source", "by_source"), ("feedback", "feedback")):
        for value, count in stats[key].items():
            counts.add_row(label, value, str(count))
    console.print(counts)
    rewards = {
        f"[{b['low']:+.1f}, {b['high']:+.1f}{']' if b['high'] == 1 else ')'}": b["count"]
        for b in stats["reward"]["histogram"]
    }
    console.print(_histogram("Reward", rewards))
    console.print(_histogram("Quality", stats["quality"]["histogram"]))


def _histogram(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("bucket")
    table.add_column("count", justify="right")
    table.add_column("", min_width=BAR_WIDTH)
    peak = max(counts.values(), default=0) or 1
    for bucket, count in counts.items():
        table.add_row(bucket, str(count), "█" * round(BAR_WIDTH * count / peak))
    return table


def _fmt(value: float | None, *, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def register(app: typer.Typer) -> None:
    app.add_typer(log_app, name="log")
    app.command("feedback")(feedback_command)
    app.command("stats")(stats_command)
