"""Registering, finding and staging model versions. The version number is per task."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneloop.errors import InputError
from tuneloop.store import ModelVersion, Store


class Stage(StrEnum):
    """Where a version is in its life: candidate → shadow → canary(%) → production; archived is
    where a replaced production (or a retired version) goes."""

    CANDIDATE = "candidate"
    SHADOW = "shadow"
    CANARY = "canary"
    PRODUCTION = "production"
    ARCHIVED = "archived"


STAGES = tuple(stage.value for stage in Stage)
REGISTER_ATTEMPTS = 5
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def has_weights(path: str | Path | None) -> bool:
    """Whether ``path`` is a weights file or a folder holding one (a model or an adapter)."""
    if not path:
        return False
    location = Path(path)
    if location.is_file():
        return location.suffix in WEIGHT_SUFFIXES
    return location.is_dir() and any(
        child.suffix in WEIGHT_SUFFIXES for child in location.iterdir() if child.is_file()
    )


def servable(version: ModelVersion) -> bool:
    """A version that can answer: its weights exist locally, it lives with a remote backend, or
    its config names a provider that serves it elsewhere (``serve``, e.g. a vLLM server)."""
    if (version.config or {}).get("serve"):
        return True
    if version.backend == "local":
        return has_weights(version.artifact_path)
    return bool(version.remote_id or version.artifact_path)


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
    session: Session | None = None,
) -> ModelVersion:
    """Add the next version of ``task`` as a candidate; safe when two workers register at once.

    A local version is registered only once its weights exist at ``artifact_path`` (a remote
    one needs its ``remote_id``; one served elsewhere names its provider as ``config.serve``),
    so no version ever points at nothing. Given a ``session``, the version is added in that
    transaction (a caller that must register together with other writes, such as a hosted
    job's end); a lost race for the number then raises ``IntegrityError`` for the caller to
    retry.
    """
    served_elsewhere = bool((config or {}).get("serve"))
    if backend == "local" and not served_elsewhere and not has_weights(artifact_path):
        raise InputError(
            f"no model weights at {artifact_path}; a version is registered only once its "
            "weights are in place"
        )
    if backend != "local" and not (remote_id or artifact_path or served_elsewhere):
        raise InputError(f"a {backend} version needs its remote model id")
    fields: dict[str, Any] = {
        "task": task,
        "base_model": base_model,
        "artifact_path": artifact_path,
        "dataset_id": dataset_id,
        "job_id": job_id,
        "parent_id": parent_id,
        "config": config or {},
        "metrics": metrics or {},
        "backend": backend,
        "remote_id": remote_id,
    }
    if session is not None:
        return _add_version(session, fields)
    for _attempt in range(REGISTER_ATTEMPTS):
        try:
            with store.session() as own:
                version = _add_version(own, fields)
            return version
        except IntegrityError:
            continue  # another process took that number; take the next one
    raise InputError(f"could not register a version of task {task!r} (constant conflicts)")


def _add_version(session: Session, fields: dict[str, Any]) -> ModelVersion:
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.task == fields["task"])
    )
    version = ModelVersion(version=(latest or 0) + 1, **fields)
    session.add(version)
    session.flush()
    return version


def list_versions(store: Store, task: str | None = None) -> list[ModelVersion]:
    with store.session() as session:
        query = select(ModelVersion).order_by(ModelVersion.task, ModelVersion.version)
        if task:
            query = query.where(ModelVersion.task == task)
        return list(session.scalars(query))


def resolve_version(store: Store, task: str, version: str | int = "latest") -> ModelVersion:
    """Find ``v3``/``3``, ``latest`` or a stage name (``production``) of a task.

    ``latest`` is the newest version that can answer (its weights exist), never one whose
    files are missing.
    """
    text = str(version)
    if text == "latest":
        with store.session() as session:
            newest_first = session.scalars(
                select(ModelVersion)
                .where(ModelVersion.task == task)
                .order_by(ModelVersion.version.desc())
            )
            found = next((row for row in newest_first if servable(row)), None)
        if found is None:
            known = ", ".join(v.name for v in list_versions(store, task)) or "none"
            raise InputError(f"task {task!r} has no version with weights (known: {known})")
        return found
    with store.session() as session:
        query = select(ModelVersion).where(ModelVersion.task == task)
        if text in STAGES:
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
    """Move a version to a stage (``promote`` with an explicit stage, recorded in the audit log)."""
    from tuneloop.registry.stages import promote

    return promote(
        store, task, version, to=stage, share=traffic_percent if stage == Stage.CANARY else None
    )


def update_metrics(store: Store, version_id: int, metrics: dict[str, Any]) -> None:
    """Merge evaluation metrics into a version's record (keyed by what measured them)."""
    with store.session() as session:
        row = session.get_one(ModelVersion, version_id)
        row.metrics = {**row.metrics, **metrics}
