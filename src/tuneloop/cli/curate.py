"""``tuneloop dataset build|list|validate|redact|show|diff|export``: versioned datasets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from tuneloop.cli.common import ConfigOption, console, err_console, load, load_read_only
from tuneloop.cli.options import config_options
from tuneloop.config import CurateConfig
from tuneloop.errors import InputError, TuneloopError

dataset_app = typer.Typer(help="Build, list and validate training datasets.", no_args_is_help=True)

MAX_PROBLEM_LINES = 50


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
@config_options("curate", CurateConfig)
def build(
    task: Annotated[str | None, typer.Option(help="Task to curate (default: config task).")] = None,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the task).")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face tokenizer (path, hub id or builtin:tiny) for exact token counts; "
            "without it tokens are estimated at 4 characters each."
        ),
    ] = None,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Filter, deduplicate and split the task's interactions into a new dataset version."""
    from tuneloop.curate.build import build_dataset, latest_dataset
    from tuneloop.curate.select import count_candidates

    config, store = load(config_path, **overrides)
    dataset_name = name or task or config.task
    previous = latest_dataset(store, dataset_name, workspace=config.workspace)
    loaded_tokenizer = _load_tokenizer(tokenizer) if tokenizer else None
    with _progress("reading interactions") as (bar, update):
        bar.update(update, total=count_candidates(store, task or config.task))
        dataset = build_dataset(
            store,
            config,
            task=task,
            name=name,
            tokenizer=loaded_tokenizer,
            progress=lambda done: bar.update(update, completed=done),
        )
    if previous is not None and previous.id == dataset.id:
        console.print(
            f"[yellow]unchanged[/yellow]: same content as [bold]{dataset.label}[/bold] "
            f"({dataset.path})"
        )
        return
    _print_build(dataset.label, dataset.path, dataset.stats)


def _print_build(label: str, path: str, stats: dict[str, Any]) -> None:
    counts = stats.get("counts", {})
    console.print(f"built [bold]{label}[/bold] in {path}")
    console.print(
        f"  examples: {counts.get('train', 0)} train, {counts.get('eval', 0)} eval "
        f"(from {stats.get('candidates', 0)} candidates, {stats.get('dropped', 0)} dropped)"
    )
    for reason, count in stats.get("drop_reasons", {}).items():
        console.print(f"    dropped {count:>5}  {reason}", highlight=False)
    tokens = stats.get("tokens", {})
    train_tokens = tokens.get("train", {})
    console.print(
        f"  tokens: {train_tokens.get('total', 0):,} train "
        f"(mean {train_tokens.get('mean', 0)}, max {train_tokens.get('max', 0)}), "
        f"{tokens.get('eval', {}).get('total', 0):,} eval; {tokens.get('method')}"
    )
    if tokens.get("over_max_length"):
        console.print(
            f"  [yellow]{tokens['over_max_length']} examples exceed train.max_length "
            f"({tokens.get('max_length')}) and will be truncated[/yellow]"
        )
    coverage = stats.get("coverage", {})
    categories = sorted(set(coverage.get("train", {})) | set(coverage.get("eval", {})))
    if categories:
        parts = [
            f"{c} {coverage.get('train', {}).get(c, 0)}/{coverage.get('eval', {}).get(c, 0)}"
            for c in categories
        ]
        console.print(f"  coverage (train/eval): {', '.join(parts)}", highlight=False)
    cost = stats.get("cost_estimate", {})
    if cost:
        approx = "~" if cost.get("estimated_tokens") else ""
        console.print(
            f"  training cost, {cost.get('epochs')} epochs of "
            f"{approx}{cost.get('training_tokens', 0):,} train tokens:"
        )
        for target, usd in cost.get("usd", {}).items():
            console.print(f"    {target:<26} {approx}${usd:,.2f}", highlight=False)


@dataset_app.command("list")
def list_command(
    name: Annotated[str | None, typer.Option(help="Only versions of this dataset.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Every dataset version with its size, tokens and content hash."""
    from tuneloop.curate.build import list_datasets

    config, store = load_read_only(config_path)
    datasets = list_datasets(store, name=name, workspace=config.workspace)
    if not datasets:
        console.print("no datasets yet (run `tuneloop dataset build`)")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("dataset", "task", "created"):
        table.add_column(column, no_wrap=column != "task")
    for column in ("train", "eval", "tokens"):
        table.add_column(column, justify="right")
    table.add_column("hash")
    for dataset in datasets:
        counts = dataset.stats.get("counts", {})
        tokens = dataset.stats.get("tokens", {}).get("train", {}).get("total")
        table.add_row(
            dataset.label,
            dataset.task,
            f"{dataset.created_at:%Y-%m-%d %H:%M}",
            str(counts.get("train", "-")),
            str(counts.get("eval", "-")),
            f"{tokens:,}" if isinstance(tokens, int) else "-",
            dataset.content_hash[:10],
        )
    console.print(table)


@dataset_app.command("validate")
def validate(
    path: Annotated[
        Path, typer.Argument(help="A dataset file or folder, in any supported format.")
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Read as this format instead of detecting it per file."),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
    schema: Annotated[
        Path | None, typer.Option(help="JSON schema every assistant answer must satisfy.")
    ] = None,
    expect_json: Annotated[
        bool, typer.Option("--expect-json", help="Assistant answers must be JSON.")
    ] = False,
    model: Annotated[
        str, typer.Option(help="Target model: its context length bounds an example.")
    ] = "gpt-4o-mini",
    max_tokens: Annotated[
        int | None, typer.Option(help="Token limit of one example (overrides --model's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
) -> None:
    """Check every entry; print FILE:LINE: CODE message; exit 1 on any error."""
    from tuneloop.curate.checks import ValidateOptions, count_lines, load_schema, validate_path

    options = ValidateOptions(
        fmt=fmt,
        expect_json=expect_json,
        schema=load_schema(schema) if schema else None,
        max_tokens=max_tokens,
        model=model,
    )
    try:
        with _progress("validating") as (bar, update):
            bar.update(update, total=count_lines(path))
            report = validate_path(
                path, options, progress=lambda done: bar.update(update, completed=done)
            )
    except TuneloopError as exc:  # the path itself cannot be read: still exit 1, one line
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    ok = report.ok(strict=strict)
    if as_json:
        typer.echo(json.dumps(report.as_dict(strict=strict), ensure_ascii=False))
    else:
        for shown, finding in enumerate(report.findings):
            if shown == MAX_PROBLEM_LINES:
                console.print(f"... and {len(report.findings) - shown} more findings")
                break
            console.print(str(finding), highlight=False, soft_wrap=True, markup=False)
        status = "[green]ok[/green]" if ok else "[red]invalid[/red]"
        console.print(f"{status} {escape(report.summary())}", highlight=False)
        console.print(f"  tokens counted with: {report.token_method}", highlight=False)
    if not ok:
        raise typer.Exit(1)


@dataset_app.command("redact")
def redact(
    source: Annotated[Path, typer.Argument(help="A dataset file or datasets folder.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the redacted copy.")],
    ner: Annotated[
        str | None, typer.Option(help="curate.pii_ner: none or presidio (names and places).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Replace emails, phones, cards, IPs, IBANs, SSNs, secrets (and more) in every entry."""
    from tuneloop.config import load_config
    from tuneloop.curate.pii import redact_path, redactor_from_config

    overrides = {"curate.pii_ner": ner} if ner else {}
    config = load_config(config_path, overrides=overrides)
    report = redact_path(source, out, redactor_from_config(config.curate), overwrite=overwrite)
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(report.counts.items())) or "nothing"
    console.print(
        f"wrote {escape(str(out))}: {report.entries} entries, {report.changed} changed; "
        f"replaced {counts}",
        highlight=False,
        soft_wrap=True,
    )


@dataset_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest or NAME@vN.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """A version's card: counts, sources, drops, tokens, coverage, PII replaced, cost."""
    from tuneloop.curate.versions import show_version

    config, store = load(config_path)
    dataset, card, markdown = show_version(store, ref, workspace=config.workspace)
    if as_json:
        typer.echo(json.dumps(card, ensure_ascii=False, sort_keys=True))
        return
    typer.echo(markdown.rstrip())
    typer.echo(f"\nfiles: {dataset.path}")


@dataset_app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="The older version, NAME@vA.")],
    new: Annotated[str, typer.Argument(help="The newer version, NAME@vB.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """What changed between two versions: examples in and out, counts, coverage, drops."""
    from tuneloop.curate.versions import diff_refs

    config, store = load(config_path)
    changes = diff_refs(store, old, new, workspace=config.workspace)
    if as_json:
        typer.echo(json.dumps(changes, ensure_ascii=False, sort_keys=True))
        return
    examples = changes["examples"]
    same = " (same content)" if changes["same_content"] else ""
    typer.echo(f"{changes['from']} -> {changes['to']}{same}")
    typer.echo(
        f"  examples: +{examples['added']} added, -{examples['removed']} removed, "
        f"{examples['kept']} kept ({examples['moved_split']} changed split)"
    )
    for section in ("counts", "train_tokens", "coverage", "drop_reasons", "settings"):
        for key, (before, after) in changes[section].items():
            typer.echo(f"  {section} {key}: {before} -> {after}")


@dataset_app.command("export")
def export(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest or NAME@vN.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="openai, together, alpaca, sharegpt, prompt-completion, dpo, preference, "
            "parquet or hf.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (one file per split).")],
    redact: Annotated[
        bool, typer.Option("--redact/--no-redact", help="Replace PII (on unless turned off).")
    ] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Write a version in a fine-tuning format; every file loads in its target as-is."""
    from tuneloop.curate.versions import export_version

    config, store = load(config_path)
    with _progress("exporting") as (bar, update):
        report = export_version(
            store,
            config,
            ref,
            fmt,
            out,
            redact=redact,
            overwrite=overwrite,
            progress=lambda done, total: bar.update(update, completed=done, total=total),
        )
    for split, path in report.files.items():
        console.print(
            f"{split}: {report.examples[split]} examples -> {escape(path)}", highlight=False
        )
    if report.redacted:
        replaced = ", ".join(f"{k} {n}" for k, n in sorted(report.redactions.items())) or "nothing"
        console.print(f"PII replaced: {replaced}", highlight=False)
    else:
        console.print("[yellow]PII redaction turned off for this export[/yellow]")


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s")


@contextmanager
def _progress(what: str) -> Iterator[tuple[Progress, TaskID]]:
    """A progress bar with rate and time left, shown only on a terminal."""
    columns = (
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        yield bar, bar.add_task(what, total=None)


def _load_tokenizer(spec: str) -> Any:
    from tuneloop.assets import resolve_model_path

    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError("--tokenizer needs transformers (pip install 'tuneloop[local]')") from None
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(spec))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load tokenizer {spec!r}: {exc}") from None
