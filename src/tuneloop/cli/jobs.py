"""``tuneloop jobs``: every job of every kind, its state, and stopping one."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, load, load_read_only

jobs_app = typer.Typer(help="Jobs of every kind: list, show, cancel.", no_args_is_help=True)
STATUS_STYLE = {
    "running": "cyan",
    "queued": "dim",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "stale": "magenta",
}


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def list_command(
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind (train, ...).")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only jobs in this status (stale: unfinished, process gone)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """The newest jobs with their status; a job whose process died shows as stale."""
    from tuneloop.errors import InputError
    from tuneloop.store import JobStatus
    from tuneloop.store.jobs import list_jobs

    wanted = None
    if status is not None:
        try:
            wanted = JobStatus(status)
        except ValueError:
            choices = ", ".join(member.value for member in JobStatus)
            raise InputError(f"--status {status!r} is not a job status; one of {choices}") from None
    _, store = load_read_only(config_path)
    try:
        jobs = list_jobs(store, kind=kind, status=wanted, limit=limit)
    finally:
        store.close()
    if as_json:
        rows = [
            {
                "id": job.id,
                "kind": job.kind,
                "task": job.task,
                "backend": job.backend,
                "status": str(state),
                "created_at": _iso(job.created_at),
                "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at),
                "heartbeat_at": _iso(job.heartbeat_at),
                "error": job.error,
                "provider_status": (job.result or {}).get("provider_status"),
                "result": job.result,
            }
            for job, state in jobs
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not jobs:
        console.print("no jobs yet")
        return
    table = Table(title="jobs")
    for column in ("id", "kind", "task", "backend", "status", "started", "took", "note"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for job, state in jobs:
        note = job.error or ""
        provider_status = (job.result or {}).get("provider_status")
        if not note and provider_status:
            note = f"{job.backend}: {provider_status}"
        if state == "stale" and job.status != "stale":
            note = "no heartbeat: its process is gone (`tuneloop jobs cancel` clears it)"
        table.add_row(
            str(job.id),
            job.kind,
            job.task,
            job.backend,
            f"[{STATUS_STYLE.get(state, '')}]{state}[/]",
            _time(job.started_at),
            _took(job.started_at, job.finished_at),
            note,
        )
    console.print(table)


@jobs_app.command("show")
def show_command(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="Job id (see `tuneloop jobs list`).")],
    events: Annotated[int, typer.Option(min=0, help="How many of its last events to show.")] = 10,
    config_path: ConfigOption = None,
) -> None:
    """One job: status, config, result or error, heartbeat and its last events."""
    from tuneloop.store.jobs import get_job

    _, store = load_read_only(config_path)
    try:
        job, state, last = get_job(store, job_id, events=events)
    finally:
        store.close()
    console.print(
        f"job [bold]{job.id}[/bold] {job.kind} {job.task} ({job.backend}): "
        f"[{STATUS_STYLE.get(state, '')}]{state}[/]",
        highlight=False,
    )
    for label, value in (
        ("created", _time(job.created_at)),
        ("started", _time(job.started_at)),
        ("finished", _time(job.finished_at)),
        ("heartbeat", _time(job.heartbeat_at)),
        ("process", f"{job.pid} on {job.host}" if job.pid else "-"),
        ("cancel asked", _time(job.cancel_requested_at) if job.cancel_requested_at else None),
        ("error", job.error),
    ):
        if value:
            console.print(f"  {label:<13}{value}", highlight=False, soft_wrap=True)
    for title, data in (("config", job.config), ("result", job.result)):
        if data:
            console.print(f"  {title}:", json.dumps(data, indent=2, default=str), highlight=False)
    for event in last:
        console.print(
            f"  {_time(event.created_at)} {event.kind:<8} {json.dumps(event.data, default=str)}",
            highlight=False,
            soft_wrap=True,
        )


@jobs_app.command("cancel")
def cancel_command(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="Job id (see `tuneloop jobs list`).")],
    config_path: ConfigOption = None,
) -> None:
    """Stop a job: a hosted one is cancelled at its provider; a running local one stops at its
    next step; a stale one is cleared."""
    from tuneloop.store import JobStatus
    from tuneloop.train import cancel

    _, store = load(config_path)
    try:
        status, provider_status = cancel(store, job_id)
    finally:
        store.close()
    if provider_status is not None:
        console.print(
            f"job {job_id} is {status} (its provider says {provider_status})", highlight=False
        )
    elif status == JobStatus.RUNNING:
        console.print(f"asked job {job_id} to stop; it stops at its next step", highlight=False)
    else:
        console.print(f"job {job_id} is now {status}", highlight=False)


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = int((end - start).total_seconds())
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )
