"""``tuneloop train``: fine-tune on a dataset version and register the result."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tuneloop.cli.common import ConfigOption, console, load
from tuneloop.cli.options import config_options
from tuneloop.config import TrainConfig


def register(app: typer.Typer) -> None:
    app.command("train")(config_options("train", TrainConfig)(train))


def train(
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset as NAME@VERSION or NAME (newest); default: the task's newest."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    continue_from: Annotated[
        str | None,
        typer.Option(
            "--continue-from",
            help="Continue training this version's adapter (v1, latest, production).",
        ),
    ] = None,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Fine-tune on a dataset version (LoRA by default); registers the task's next version."""
    from tuneloop.curate.build import resolve_dataset
    from tuneloop.registry import resolve_version
    from tuneloop.store import JobEventKind, ProgressEvent
    from tuneloop.train import train_model

    config, store = load(config_path, **overrides)
    task = task or config.task
    chosen = resolve_dataset(store, dataset or task, workspace=config.workspace)
    parent = resolve_version(store, task, continue_from) if continue_from else None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console,
    ) as bars:
        bar = bars.add_task(f"train {task} on {chosen.label}", total=None, loss="–")

        def on_event(event: ProgressEvent) -> None:
            if event.kind == JobEventKind.METRIC:
                bars.update(
                    bar,
                    completed=event.step,
                    total=event.data["total_steps"],
                    loss=f"{event.data['loss']:.3f}",
                )
            elif event.kind == JobEventKind.LOG:
                bars.console.print(event.data["message"])

        version = train_model(store, config, chosen, task=task, parent=parent, progress=on_event)
    training = version.metrics.get("training", {})
    console.print(
        f"registered [bold]{task}@{version.name}[/bold] ({version.stage}): "
        f"train loss {training.get('train_loss')}, eval loss "
        f"{training.get('eval_loss')}, adapter {version.artifact_path}"
    )
