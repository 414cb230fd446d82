"""``tuneloop synth run|status``: run a synthesis pipeline file, see the workspace's runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, err_console

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
    from tuneloop.synth import synthesize

    config = load_config(config_path)
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>7.1f}/s"),
        TimeRemainingColumn(),
        TextColumn("${task.fields[spend]:.4f}"),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        bars: dict[str, Any] = {}

        def update(step: str, done: int, total: int, spend: float) -> None:
            if step not in bars:
                bars[step] = progress.add_task(step, total=total, rate=0.0, spend=spend)
            task = progress.tasks[bars[step]]
            rate = done / task.elapsed if task.elapsed else 0.0
            progress.update(bars[step], completed=done, rate=rate, spend=spend)

        summary = synthesize(config, pipeline, n=n, resume=resume, progress=update)
    _print_summary(summary)


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
        console.print(f"failed or rejected: {reasons} (a re-run retries failed calls only)")
    folder = Path(summary["files"]["run"]).parent
    console.print(
        f"{summary['examples']} examples ({summary['near_duplicates_dropped']} near-duplicates "
        f"dropped), {summary['stored']} in the store; files in {folder}"
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
    table = Table("pipeline", "status", "inputs", "examples", "failed", "cost $")
    for state in runs:
        table.add_row(
            str(state.get("pipeline")),
            str(state.get("status")),
            str(state.get("inputs", "")),
            str(state.get("examples", "")),
            str(state.get("failed", "")),
            f"{state['cost_usd']:.4f}" if "cost_usd" in state else "",
        )
    console.print(table)
