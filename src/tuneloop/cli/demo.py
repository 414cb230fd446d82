"""``tuneloop demo``: the whole loop on the embedded default, with progress and a results table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuneloop.cli.common import console, err_console

# Below this share of the requested screen, the demo says plainly that the student is weak.
WEAK_SHARE = 0.5


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    workspace: Annotated[
        Path, typer.Option(help="Folder for the demo workspace (recreated).")
    ] = Path("tuneloop-demo"),
    quick: Annotated[bool, typer.Option(help="A shortened run (for tests): tiny numbers.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on the last line.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 0,
) -> None:
    """Run the whole loop offline: simulated app → curate → train v1 → evaluate vs the base."""
    from tuneloop.demo.run import run_demo

    # Progress goes to stderr with --json so stdout stays one clean JSON line.
    out = err_console if json_output else console
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    ) as bars:

        def step(name: str, total: int) -> Callable[[int, int], None]:
            task_id = bars.add_task(name, total=total)

            def update(done: int, new_total: int) -> None:
                bars.update(task_id, completed=done, total=new_total)

            return update

        summary = run_demo(workspace, quick=quick, step=step, seed=seed)
    result = summary.to_dict()
    if json_output:
        print(json.dumps(result))
        return
    _print_summary(result)


def _print_summary(result: dict[str, Any]) -> None:
    capture, dataset, training = result["capture"], result["dataset"], result["training"]
    feedback = ", ".join(f"{k} {v}" for k, v in sorted(capture["feedback"].items()))
    console.print(
        f"\n[bold]capture[/bold]  {capture['logged']} calls logged "
        f"({capture['not_stored_opt_out']} from an opted-out tenant not stored), "
        f"{capture['synthetic_stored']} synthetic; feedback: {feedback}"
    )
    console.print(
        f"[bold]curate[/bold]   dataset {dataset['label']}: {dataset['train']} train, "
        f"{dataset['eval']} eval examples"
    )
    if training:
        steps, planned = training.get("steps"), training.get("planned_steps")
        cut = (
            f" of {planned} (the rest did not fit in the demo's time budget)"
            if planned and steps != planned
            else ""
        )
        console.print(
            f"[bold]train[/bold]    {steps} steps{cut}, {training.get('epochs')} epochs, loss "
            f"{training.get('train_loss')} (eval {training.get('eval_loss')}), "
            f"{training.get('wall_s')} s"
        )
    evaluation = result.get("evaluation", {})
    leaked = evaluation.get("eval_answers_in_training")
    console.print(
        f"[bold]evaluate[/bold] {evaluation.get('requests')} held-out requests, each in seen and "
        f"in new wording; eval answers also in training: {_fmt_pct(leaked)}"
    )
    table = Table(title="student before and after fine-tuning (held-out requests)")
    columns = (
        "model",
        "wording",
        "valid JSON",
        "right screen [95% CI]",
        "similarity",
        "errors",
        "n",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "wording") else "right")
    for label, row in result["models"].items():
        for wording, group in row.get("wording", {}).items():
            table.add_row(
                label,
                wording,
                _fmt_pct(group.get("valid_json_rate")),
                _fmt_pct(group.get("right_screen_rate"))
                + _fmt_interval(group.get("right_screen_interval")),
                _fmt(group.get("similarity"), "{:.3f}"),
                str(group.get("errors", "")),
                str(group.get("n", "")),
            )
    console.print(table)
    speed = ", ".join(
        f"{label} {_fmt(row.get('latency_ms'), '{:.0f}')} ms, "
        f"{_fmt(row.get('tokens_per_s'), '{:.1f}')} tokens/s"
        for label, row in result["models"].items()
        if row.get("latency_ms") is not None
    )
    if speed:
        batch = max((row.get("batch_size") or 1) for row in result["models"].values())
        how = (
            f" (answered in batches of {batch}: latency is a batch's measured wall time, "
            "tokens/s the batch throughput)"
            if batch > 1
            else " (one request at a time)"
        )
        console.print(f"speed{how}: {speed}")
    for label, row in result["models"].items():
        if label in ("base", "teacher") or row.get("right_screen_rate") is None:
            continue
        if row["right_screen_rate"] < WEAK_SHARE:
            new = row.get("wording", {}).get("new", {})
            console.print(
                f"[yellow]weak:[/yellow] {label} gives the requested screen for "
                f"{_fmt_pct(row['right_screen_rate'])} of held-out requests (new wording "
                f"{_fmt_pct(new.get('right_screen_rate'))}): it writes valid layouts, but does not "
                "yet follow most requests.",
                highlight=False,
            )
    teacher = result["models"].get("teacher", {})
    if teacher.get("note"):
        console.print(f"teacher: {teacher['note']}")
    if result.get("smoke"):
        console.print(
            "[yellow]--quick is a smoke run: too little data and training for these numbers to "
            "say anything about learning. Run `tuneloop demo` for the real comparison.[/yellow]"
        )
    for name, path in result.get("plots", {}).items():
        if path:
            console.print(f"{name} plot: {path}")
    console.print(
        f"workspace: [bold]{result['workspace']}[/bold]  (wall time {result['wall_s']} s)"
    )


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def _fmt_interval(interval: list[float | None] | None) -> str:
    if not interval or interval[0] is None or interval[1] is None:
        return ""
    return f" [{interval[0] * 100:.0f}–{interval[1] * 100:.0f}]"


def _fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"
