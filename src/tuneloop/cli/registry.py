"""``tuneloop models``: list versions, see lineage, move them between stages."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, load, load_read_only

models_app = typer.Typer(help="Model versions: list, show, promote, stage.", no_args_is_help=True)


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
