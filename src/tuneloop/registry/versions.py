"""Registering, finding and staging model versions. The version number is per task."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tuneloop.errors import InputError
from tuneloop.store import ModelVersion, Store

# candidate → shadow → canary(%) → production; archived is where a replaced production goes.
STAGES = ("candidate", "shadow", "canary", "production", "archived")
REGISTER_ATTEMPTS = 5


def register_version(
    store: Store,
    *,
    task: str,
    base_model: str,
    artifact_path: str | None,
    dataset_id: int | None = None,
    job_id: int | None = None,
    parent_id: int | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    backend: str = "local",
    remote_id: str | None = None,
) -> ModelVersion:
    """Add the next version of ``task`` as a candidate; safe when two workers register at once."""
    for _attempt in range(REGISTER_ATTEMPTS):
        try:
            with store.session() as session:
                latest = session.scalar(
                    select(func.max(ModelVersion.version)).where(ModelVersion.task == task)
                )
                version = ModelVersion(
                    task=task,
                    version=(latest or 0) + 1,
                    base_model=base_model,
                    artifact_path=artifact_path,
                    dataset_id=dataset_id,
                    job_id=job_id,
                    parent_id=parent_id,
                    config=config or {},
                    metrics=metrics or {},
                    backend=backend,
                    remote_id=remote_id,
                )
                session.add(version)
            return version
        except IntegrityError:
            continue  # another process took that number; take the next one
    raise InputError(f"could not register a version of task {task!r} (constant conflicts)")


def list_versions(store: Store, task: str | None = None) -> list[ModelVersion]:
    with store.session() as session:
        query = select(ModelVersion).order_by(ModelVersion.task, ModelVersion.version)
        if task:
            query = query.where(ModelVersion.task == task)
        return list(session.scalars(query))


def resolve_version(store: Store, task: str, version: str | int = "latest") -> ModelVersion:
    """Find ``v3``/``3``, ``latest`` or a stage name (``production``) of a task."""
    with store.session() as session:
        query = select(ModelVersion).where(ModelVersion.task == task)
        text = str(version)
        if text == "latest":
            query = query.order_by(ModelVersion.version.desc())
        elif text in STAGES:
            query = query.where(ModelVersion.stage == text).order_by(ModelVersion.version.desc())
        else:
            number = text.removeprefix("v")
            if not number.isdigit():
                raise InputError(f"{version!r} is not a version (v1, 2, latest or a stage name)")
            query = query.where(ModelVersion.version == int(number))
        found = session.scalars(query.limit(1)).first()
    if found is None:
        known = ", ".join(v.name for v in list_versions(store, task)) or "none"
        raise InputError(f"task {task!r} has no model version {version!r} (known: {known})")
    return found


def set_stage(
    store: Store, task: str, version: str | int, stage: str, *, traffic_percent: float = 0.0
) -> ModelVersion:
    """Move a version to a stage; a new production version archives the previous one."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    if not 0 <= traffic_percent <= 100:
        raise InputError(f"traffic percent must be in [0, 100], got {traffic_percent}")
    target = resolve_version(store, task, version)
    with store.session() as session:
        if stage == "production":
            for previous in session.scalars(
                select(ModelVersion).where(
                    ModelVersion.task == task, ModelVersion.stage == "production"
                )
            ):
                previous.stage, previous.traffic_percent = "archived", 0.0
        row = session.get_one(ModelVersion, target.id)
        row.stage = stage
        row.traffic_percent = 100.0 if stage == "production" else traffic_percent
    return resolve_version(store, task, target.version)


def update_metrics(store: Store, version_id: int, metrics: dict[str, Any]) -> None:
    """Merge evaluation metrics into a version's record (keyed by what measured them)."""
    with store.session() as session:
        row = session.get_one(ModelVersion, version_id)
        row.metrics = {**row.metrics, **metrics}
