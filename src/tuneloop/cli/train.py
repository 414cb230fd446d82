"""``tuneloop train``: fine-tune on a dataset version and register the result.

``train start`` runs a local job here, or submits a hosted one (OpenAI, Together) and returns;
``train watch JOB`` follows any training job from any process and registers a hosted job's
model when it succeeds; plain ``train`` is ``start`` then ``watch``; ``train resume JOB``
continues a killed or interrupted local job from its last checkpoint. Listing, showing and
cancelling are ``tuneloop jobs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tuneloop.cli.common import ConfigOption, console, load
from tuneloop.cli.options import config_options
from tuneloop.config import TrainConfig

if TYPE_CHECKING:
    from tuneloop.store import ModelVersion, ProgressCallback, ProgressEvent

train_app = typer.Typer(
    help="Fine-tune on a dataset version: locally, or as a hosted OpenAI / Together job.",
)

DatasetOption = Annotated[
    str | None,
    typer.Option(help="Dataset as NAME@VERSION or NAME (newest); default: the task's newest."),
]
TaskOption = Annotated[str | None, typer.Option(help="Task (default: config task).")]
ContinueOption = Annotated[
    str | None,
    typer.Option(
        "--continue-from",
        help="Local: continue training this version's adapter (v1, latest, production).",
    ),
]


def register(app: typer.Typer) -> None:
    train_app.callback(invoke_without_command=True)(config_options("train", TrainConfig)(train))
    train_app.command("start")(config_options("train", TrainConfig)(start))
    train_app.command("watch")(watch_command)
    train_app.command("resume")(resume)
    app.add_typer(train_app, name="train")


def train(
    ctx: typer.Context,
    dataset: DatasetOption = None,
    task: TaskOption = None,
    continue_from: ContinueOption = None,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Train and register the task's next version (a hosted job: submit, then watch it)."""
    if ctx.invoked_subcommand is not None:
        return
    job_id = start(dataset, task, continue_from, config_path, overrides=overrides)
    if job_id is not None:
        watch_command(job_id, None, config_path)


def start(
    dataset: DatasetOption = None,
    task: TaskOption = None,
    continue_from: ContinueOption = None,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> int | None:
    """Start training: a local job runs to its end here; a hosted job is submitted (its id is
    printed; `tuneloop train watch ID` follows it and registers the model)."""
    from tuneloop.curate.build import resolve_dataset
    from tuneloop.errors import InputError
    from tuneloop.registry import resolve_version
    from tuneloop.train import submit, train_model

    config, store = load(config_path, **overrides)
    try:
        task = task or config.task
        chosen = resolve_dataset(store, dataset or task, workspace=config.workspace)
        if config.train.backend != "local":
            if continue_from:
                raise InputError(
                    "--continue-from is for local training; a Together job continues a "
                    "finished one with train.together.from_checkpoint"
                )
            job_id = submit(store, config, chosen, task=task, progress=_log_line)
            console.print(
                f"submitted job {job_id} to {config.train.backend}; follow it with "
                f"`tuneloop train watch {job_id}`",
                highlight=False,
            )
            return job_id
        parent = resolve_version(store, task, continue_from) if continue_from else None
        with _bars(f"train {task} on {chosen.label}") as on_event:
            version = train_model(
                store, config, chosen, task=task, parent=parent, progress=on_event
            )
        _registered(version)
        return None
    finally:
        store.close()


def watch_command(
    job_id: Annotated[int, typer.Argument(metavar="JOB", help="Job id (`tuneloop jobs list`).")],
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Stop watching after this many seconds (the job goes on)."),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Follow a training job until it ends; register a hosted job's model when it succeeds.

    Re-attaches from any process; Ctrl-C stops watching, not the job."""
    from tuneloop.store import JobStatus
    from tuneloop.train import watch

    config, store = load(config_path)
    try:
        with _bars(f"job {job_id}") as on_event:
            watched = watch(store, config, job_id, progress=on_event, timeout_s=timeout)
    except KeyboardInterrupt:
        console.print(
            f"stopped watching; job {job_id} goes on (`tuneloop train watch {job_id}` re-attaches)",
            highlight=False,
        )
        raise typer.Exit(130) from None
    finally:
        store.close()
    provider = f" ({watched.provider_status})" if watched.provider_status else ""
    if watched.status == JobStatus.SUCCEEDED and watched.version is not None:
        _registered(watched.version, job_id)
    elif watched.ended:
        console.print(
            f"job {job_id} {watched.status}{provider}: {watched.error or 'no reason given'}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    else:
        console.print(
            f"job {job_id} is still {watched.status}{provider}; "
            f"`tuneloop train watch {job_id}` picks it up again",
            highlight=False,
        )


def resume(
    job_id: Annotated[int, typer.Argument(metavar="JOB", help="Job id (`tuneloop jobs list`).")],
    config_path: ConfigOption = None,
) -> None:
    """Continue a killed (stale) or interrupted local training job from its last checkpoint,
    to the result it would have had; the same job registers its version once."""
    from tuneloop.train import resume_training

    config, store = load(config_path)
    try:
        with _bars(f"resume job {job_id}") as on_event:
            version = resume_training(store, config, job_id, progress=on_event)
        _registered(version, job_id)
    finally:
        store.close()


def _registered(version: ModelVersion | None, job_id: int | None = None) -> None:
    if version is None:
        return  # a non-main process under accelerate launch: the main one registers and says so
    training = version.metrics.get("training", {})
    origin = f" from job {job_id}" if job_id is not None else ""
    if version.backend == "local":
        where = f"adapter {version.artifact_path}"
    else:
        where = f"{version.backend} model {version.remote_id}"
    losses = ", ".join(
        f"{name.replace('_', ' ')} {training[name]}"
        for name in ("train_loss", "eval_loss", "valid_loss")
        if name in training
    )
    console.print(
        f"registered [bold]{version.task}@{version.name}[/bold]{origin} ({version.stage}): "
        f"{losses + ', ' if losses else ''}{where}",
        highlight=False,
        soft_wrap=True,
    )


def _log_line(event: ProgressEvent) -> None:
    console.print(str(event.data.get("message", "")), highlight=False, markup=False, soft_wrap=True)


@contextmanager
def _bars(description: str) -> Iterator[ProgressCallback]:
    """A progress bar fed by job events: metric events move it, log events print a line."""
    from tuneloop.store import JobEventKind

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}{task.fields[eval]}"),
        TextColumn("{task.fields[speed]}"),
        TextColumn("{task.fields[memory]}"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task(description, total=None, loss="–", eval="", speed="", memory="")

        def on_event(event: ProgressEvent) -> None:
            data = event.data
            if event.kind == JobEventKind.METRIC and "eval_loss" in data and "loss" not in data:
                progress.update(bar, eval=f" (eval {data['eval_loss']:.3f})")
            elif event.kind == JobEventKind.METRIC:
                loss = data.get("loss")
                speed = data.get("tokens_per_s")
                progress.update(
                    bar,
                    completed=event.step,
                    total=data.get("total_steps"),
                    loss=f"{loss:.3f}" if isinstance(loss, int | float) else "–",
                    speed=f"{speed:,.0f} tok/s" if isinstance(speed, int | float) else "",
                    memory=_memory(data),
                )
            elif event.kind == JobEventKind.LOG and "checkpoint" in data:
                pass  # every checkpoint is in the job's events; the bar stays quiet about them
            elif event.kind == JobEventKind.LOG and data.get("message"):
                progress.console.print(
                    str(event.data["message"]), highlight=False, markup=False, soft_wrap=True
                )

        yield on_event


def _memory(data: Any) -> str:
    """Peak memory of a local step: GPU memory on CUDA, else the process's resident set."""
    if isinstance(data.get("gpu_mem_gb"), int | float):
        return f"{data['gpu_mem_gb']:.1f} GB GPU"
    if isinstance(data.get("rss_mb"), int | float):
        return f"{data['rss_mb'] / 1024:.1f} GB RAM"
    return ""
