"""``tuneloop train``: fine-tune on a dataset version and register the result."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tuneloop.cli.common import ConfigOption, console, load


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    dataset: Annotated[str | None, typer.Option(help="Dataset as NAME@VERSION or NAME (newest); "
                                                "default: the task's newest.")] = None,
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    continue_from: Annotated[str | None, typer.Option(
        "--continue-from", help="Continue training this version's adapter (v1, latest, "
        "production).")] = None,
    base_model: Annotated[str | None, typer.Option(help="train.base_model")] = None,
    method: Annotated[str | None, typer.Option(help="train.method: lora or full")] = None,
    epochs: Annotated[int | None, typer.Option(help="train.epochs")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="train.learning_rate")] = None,
    lora_r: Annotated[int | None, typer.Option(help="train.lora_r")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="train.lora_alpha")] = None,
    batch_size: Annotated[int | None, typer.Option(help="train.batch_size")] = None,
    max_length: Annotated[int | None, typer.Option(help="train.max_length")] = None,
    device: Annotated[str | None, typer.Option(help="train.device: auto, cpu, cuda, mps")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Fine-tune on a dataset version (LoRA by default); registers the task's next version."""
    from tuneloop.curate.build import resolve_dataset
    from tuneloop.registry import resolve_version
    from tuneloop.store import JobEventKind
    from tuneloop.train import train_model

    config, store = load(
        config_path,
        **{"train.base_model": base_model, "train.method": method, "train.epochs": epochs,
           "train.learning_rate": learning_rate, "train.lora_r": lora_r,
           "train.lora_alpha": lora_alpha, "train.batch_size": batch_size,
           "train.max_length": max_length, "train.device": device},
    )
    task = task or config.task
    chosen = resolve_dataset(store, dataset or task)
    parent = resolve_version(store, task, continue_from) if continue_from else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                  console=console) as bars:
        bar = bars.add_task(f"train {task} on {chosen.label}", total=None, loss="–")

        def on_event(event: dict[str, Any]) -> None:
            if event["kind"] == JobEventKind.METRIC:
                bars.update(bar, completed=event["step"], total=event["total_steps"],
                            loss=f"{event['loss']:.3f}")
            elif event["kind"] == JobEventKind.LOG:
                bars.console.print(event["message"])

        version = train_model(store, config, chosen, task=task, parent=parent,
                              progress=on_event)
    training = version.metrics.get("training", {})
    console.print(f"registered [bold]{task}@{version.name}[/bold] ({version.stage}): "
                  f"train loss {training.get('train_loss')}, eval loss "
                  f"{training.get('eval_loss')}, adapter {version.artifact_path}")
