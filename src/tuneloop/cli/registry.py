"""``tuneloop models``: list versions, see lineage, move them between stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, load, load_read_only

models_app = typer.Typer(
    help="Model versions: list, show, promote, rollback, history, merge.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models(
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Every registered version with its lineage, stage and headline metrics."""
    from tuneloop.registry import list_versions

    _config, store = load_read_only(config_path)
    table = Table(title="model versions")
    for column in (
        "task",
        "version",
        "stage",
        "base",
        "parent",
        "dataset",
        "valid JSON",
        "similarity",
        "created",
    ):
        table.add_column(column)
    versions = list_versions(store, task)
    names = {v.id: v.name for v in versions}
    for version in versions:
        metrics = version.metrics.get("eval", {})
        valid = metrics.get("valid_json_rate")
        similarity = metrics.get("similarity")
        table.add_row(
            version.task,
            version.name,
            version.stage,
            version.base_model,
            names.get(version.parent_id, "–") if version.parent_id else "–",
            str(version.config.get("dataset", version.dataset_id or "–")),
            "–" if valid is None else f"{valid:.0%}",
            "–" if similarity is None else f"{similarity:.3f}",
            version.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@models_app.command("show")
def show(
    version: Annotated[str, typer.Argument(help="v1, 2, latest or a stage name.")] = "latest",
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """One version's full record as JSON."""
    from tuneloop.registry import resolve_version

    config, store = load(config_path)
    row = resolve_version(store, task or config.task, version)
    console.print_json(
        json.dumps(
            {
                "task": row.task,
                "version": row.name,
                "stage": row.stage,
                "traffic_percent": row.traffic_percent,
                "base_model": row.base_model,
                "parent_id": row.parent_id,
                "dataset_id": row.dataset_id,
                "job_id": row.job_id,
                "artifact_path": row.artifact_path,
                "config": row.config,
                "metrics": row.metrics,
            },
            default=str,
        )
    )


@models_app.command("stage")
def stage(
    version: Annotated[str, typer.Argument(help="v1, 2 or latest.")],
    new_stage: Annotated[
        str, typer.Argument(metavar="STAGE", help="candidate, shadow, canary, production, archived")
    ],
    percent: Annotated[float, typer.Option(help="Traffic share for canary.")] = 0.0,
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Move a version to a stage (production archives the previous production version)."""
    from tuneloop.registry import set_stage

    config, store = load(config_path)
    row = set_stage(store, task or config.task, version, new_stage, traffic_percent=percent)
    console.print(
        f"{row.task}@{row.name} is now [bold]{row.stage}[/bold]"
        + (f" at {row.traffic_percent:g}%" if row.stage == "canary" else "")
    )


def _task_version(ref: str, default_task: str) -> tuple[str, str]:
    """``TASK@vN`` → (task, vN); a bare ``vN`` uses the config's task."""
    task, sep, version = ref.rpartition("@")
    return (task, version) if sep and task else (default_task, ref)


@models_app.command("promote")
def promote_command(
    ref: Annotated[str, typer.Argument(metavar="TASK@vN", help="The version to move.")],
    to: Annotated[
        str | None,
        typer.Option(
            help="Target stage (default: the next of candidate → shadow → canary → production)."
        ),
    ] = None,
    share: Annotated[float | None, typer.Option(help="Canary traffic share in percent.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
    eval_run: Annotated[int | None, typer.Option(help="Eval run id that justified it.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Move a version up a stage (or to --to); recorded in `models history`."""
    from tuneloop.registry import promote

    config, store = load(config_path)
    task, version = _task_version(ref, config.task)
    if share is not None and to is None:
        to = "canary"
    row = promote(store, task, version, to=to, share=share, reason=reason, eval_run_id=eval_run)
    console.print(
        f"{row.task}@{row.name} is now [bold]{row.stage}[/bold]"
        + (f" at {row.traffic_percent:g}%" if row.stage == "canary" else "")
    )


@models_app.command("rollback")
def rollback_command(
    task: Annotated[str | None, typer.Argument(help="Task (default: config task).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Put the previous production version back in production."""
    from tuneloop.registry import rollback

    config, store = load(config_path)
    row = rollback(store, task or config.task, reason=reason)
    console.print(f"{row.task}@{row.name} is [bold]production[/bold] again")


@models_app.command("history")
def history_command(
    task: Annotated[str | None, typer.Argument(help="Task (default: config task).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """The audit log of a task's stage changes: who, when, why, on which eval run."""
    from tuneloop.registry import history

    config, store = load(config_path)
    entries = history(store, task or config.task)
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry.to_dict()))
        return
    table = Table(title=f"stage history of {task or config.task}")
    for column in ("when", "version", "from", "to", "share", "who", "why", "eval run"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.when.strftime("%Y-%m-%d %H:%M:%S"),
            e.version,
            e.from_stage,
            e.to_stage,
            f"{e.traffic_percent:g}%",
            e.actor,
            e.reason or "–",
            str(e.eval_run_id or "–"),
        )
    console.print(table)


@models_app.command("current")
def current_command(
    task: Annotated[str | None, typer.Argument(help="Task (default: config task).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """The version serving the task in production."""
    from tuneloop.errors import InputError
    from tuneloop.registry import current

    config, store = load(config_path)
    row = current(store, task or config.task)
    if row is None:
        raise InputError(f"task {task or config.task!r} has no production version")
    console.print(f"{row.task}@{row.name}")


@models_app.command("merge")
def merge_command(
    ref: Annotated[str, typer.Argument(metavar="TASK@vN", help="The version to merge.")],
    out: Annotated[Path | None, typer.Option(help="Folder (default: <version>/merged).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Write a version as a full Hugging Face model (adapter merged into its base)."""
    from tuneloop.registry import merge_version

    config, store = load(config_path)
    task, version = _task_version(ref, config.task)
    console.print(f"merged model: {merge_version(store, task, version, out)}")
