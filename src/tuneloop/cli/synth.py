"""``tuneloop synth run|status``: run a synthesis pipeline file, see the workspace's runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, err_console
from tuneloop.errors import Interrupted

synth_app = typer.Typer(help="Synthetic examples from pipeline files.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")


@synth_app.command("run")
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline TOML file.")],
    n: Annotated[
        int | None, typer.Option("--n", min=1, help="Inputs to the first step (default: file's n).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run of this pipeline.")
    ] = False,
    config_path: ConfigOption = None,
) -> None:
    """Run PIPELINE: answers are cached as they arrive, so a re-run never pays twice."""
    from tuneloop.config import load_config
    from tuneloop.store import stop_on_signals
    from tuneloop.synth import synthesize

    config = load_config(config_path)
    with Progress(*_columns(), console=err_console) as progress:
        bars: dict[str, Any] = {}

        def update(step: str, done: int, total: int, spend: float) -> None:
            if step not in bars:
                bars[step] = progress.add_task(step, total=total, rate=0.0, spend=spend)
            task = progress.tasks[bars[step]]
            rate = done / task.elapsed if task.elapsed else 0.0
            progress.update(bars[step], completed=done, rate=rate, spend=spend)

        try:
            with stop_on_signals(f"synth run {pipeline}"):
                summary = synthesize(config, pipeline, n=n, resume=resume, progress=update)
        except Interrupted as exc:
            raise Interrupted(
                f"{exc}; every answer received so far is cached: "
                "run again with --resume to continue without paying twice",
                signal_number=exc.signal_number,
            ) from None
    _print_summary(summary)


def _columns() -> tuple[ProgressColumn, ...]:
    """Step, bar, done/total, percent, calls per second, time left, money spent so far."""
    return (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>7.1f}/s"),
        TimeRemainingColumn(),
        TextColumn("${task.fields[spend]:.4f}"),
    )


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(
        "step", "calls", "cached", "kept", "rejected", "failed", title=summary["pipeline"]
    )
    for name, stats in summary["steps"].items():
        table.add_row(
            name, *(str(stats[k]) for k in ("calls", "cached", "kept", "rejected", "failed"))
        )
    console.print(table)
    for name, spend in summary["providers"].items():
        console.print(
            f"{name}: {spend['calls']} calls, {spend['prompt_tokens']}+{spend['completion_tokens']}"
            f" tokens, ${spend['cost_usd']:.4f}"
        )
    if summary["failures_by_reason"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["failures_by_reason"].items()))
        retry = " (a re-run retries the failed calls only)" if summary["failed"] else ""
        console.print(f"failed or rejected: {reasons}{retry}")
    folder = Path(summary["files"]["run"]).parent
    console.print(
        f"{summary['examples']} examples ({summary['near_duplicates_dropped']} near-duplicates "
        f"dropped), {summary['stored']} in the store; files in {folder}"
    )


@synth_app.command("vary")
def vary(
    source: Annotated[
        str, typer.Argument(help="dataset:NAME[@vN], store:TASK, or a file/folder in any format.")
    ],
    provider: Annotated[str, typer.Option("--provider", "-p", help="Provider spec to ask.")],
    task: Annotated[str, typer.Option(help="Task the new examples are stored under.")],
    per_example: Annotated[int, typer.Option(min=1, max=20, help="New requests per example.")] = 3,
    limit: Annotated[int | None, typer.Option(min=1, help="Vary at most this many.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """New realistic requests for existing answers (the answers are kept)."""
    from tuneloop.config import load_config
    from tuneloop.synth import vary_and_store

    config = load_config(config_path)
    with Progress(*_columns(), console=err_console) as progress:
        bar = progress.add_task("vary", total=None, rate=0.0, spend=0.0)

        def update(done: int, total: int) -> None:
            elapsed = progress.tasks[bar].elapsed
            progress.update(bar, completed=done, total=total, rate=done / elapsed if elapsed else 0)

        result = vary_and_store(
            config,
            source,
            provider,
            task=task,
            per_example=per_example,
            limit=limit,
            progress=update,
        )
    failures = ", ".join(f"{k} {v}" for k, v in sorted(result["failures_by_reason"].items()))
    console.print(
        f"{result['variations']} new examples from {result['source_examples']} "
        f"({result['stored']} in the store, {result['cached']} answers from the cache, "
        f"${result['cost_usd']:.4f}){'; failed: ' + failures if failures else ''}; "
        f"file {result['file']}"
    )


@synth_app.command("status")
def status(config_path: ConfigOption = None) -> None:
    """The latest run of every pipeline in the workspace."""
    from tuneloop.config import load_config
    from tuneloop.synth import run_statuses

    runs = run_statuses(load_config(config_path))
    if not runs:
        console.print("no synthesis runs in this workspace")
        return
    table = Table("pipeline", "status", "inputs", "examples", "failed", "rejected", "cost $")
    for state in runs:
        table.add_row(
            str(state.get("pipeline")),
            str(state.get("status")),
            str(state.get("inputs", "")),
            str(state.get("examples", "")),
            str(state.get("failed", "")),
            str(state.get("rejected", "")),
            f"{state['cost_usd']:.4f}" if "cost_usd" in state else "",
        )
    console.print(table)
