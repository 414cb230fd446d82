"""One job model for every training backend: submit, poll, re-attach, finish exactly once.

A local job runs in the process that starts it (``train_model``). A hosted job is submitted —
export the dataset version (redacted), check the files, upload them, create the provider's
job — and its row keeps the provider's job id (``config["remote"]``), so any later process can
:func:`watch` it: poll the provider, store its new events once each, move the row through the
state machine (``tuneloop.store.TRANSITIONS``) keeping the provider's own status, and on
success register the fine-tuned model as the task's next version. Registration happens in the
same locked transaction that marks the job succeeded, after checking that no version came from
this job yet, so two watchers (or a watcher that died and a new one) register it once.
Ctrl-C in ``watch`` stops watching, never the hosted job.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tuneloop.config import Config, TrainConfig
from tuneloop.errors import InputError, Interrupted, StoreError, TrainingError, TuneloopError
from tuneloop.registry import register_version
from tuneloop.store import (
    PROVIDER_EVENT_ID,
    Dataset,
    JobEvent,
    JobEventKind,
    JobStatus,
    ModelVersion,
    ProgressCallback,
    ProgressEvent,
    Store,
    can_move,
    cancel_job,
    create_job,
    get_job,
    lock_job,
    remote_of,
    update_job,
    utcnow,
)
from tuneloop.train.hosted.base import HostedBackend, RemoteCheckpoint, RemoteEvent, RemoteJob

FINISH_ATTEMPTS = 5
ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
STOPPED = ENDED | {JobStatus.INTERRUPTED, JobStatus.STALE}
HOSTED = ("openai", "together")


@dataclass(frozen=True)
class Watched:
    """Where a watched job stands when ``watch`` returns."""

    job_id: int
    status: JobStatus
    provider_status: str | None = None
    version: ModelVersion | None = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in STOPPED


def backend_for(train: TrainConfig) -> HostedBackend:
    """The hosted backend ``train.backend`` names, with its section's settings."""
    if train.backend == "openai":
        from tuneloop.train.hosted.openai import OpenAIBackend

        return OpenAIBackend(train.openai)
    if train.backend == "together":
        from tuneloop.train.hosted.together import TogetherBackend

        return TogetherBackend(train.together)
    raise InputError(
        f"train.backend {train.backend!r} is not a hosted backend ({', '.join(HOSTED)})"
    )


def backend_of_job(config: dict[str, Any]) -> HostedBackend:
    """The backend a job was submitted with, from the settings kept in its row."""
    try:
        train = TrainConfig.model_validate(config.get("train") or {})
    except ValueError as exc:
        raise InputError(f"the job's stored train settings no longer validate: {exc}") from None
    return backend_for(train)


def submit(
    store: Store,
    config: Config,
    dataset: Dataset,
    *,
    task: str | None = None,
    train_config: TrainConfig | None = None,
    backend: HostedBackend | None = None,
    progress: ProgressCallback | None = None,
) -> int:
    """Start a hosted job on ``dataset``; return its job id at once (watch it with ``watch``).

    The files are the version's export in the provider's format (redacted unless
    ``curate.redact_pii`` is off), checked before anything is uploaded. A failure before the
    provider accepted the job marks the row failed and raises.
    """
    from tuneloop.curate import export_version

    train_config = train_config or config.train
    backend = backend or backend_for(train_config)
    plan = backend.plan()
    task = task or dataset.task
    job_config = {"train": train_config.model_dump(mode="json"), "dataset": dataset.label}
    job_id = create_job(
        store,
        kind="train",
        task=task,
        backend=backend.provider,
        dataset_id=dataset.id,
        config=job_config,
    )
    say = _say(progress)
    try:
        folder = config.artifacts_dir / "jobs" / str(job_id) / "upload"
        exported = export_version(
            store,
            config,
            dataset.label,
            plan.export_format,
            folder,
            redact=config.curate.redact_pii,
            overwrite=True,
        )
        train_path = Path(exported.files["train"])
        if exported.examples.get("train", 0) == 0:
            raise InputError(f"dataset {dataset.label} has no training examples to upload")
        validation_path = (
            Path(exported.files["eval"])
            if plan.validation and exported.examples.get("eval", 0) > 0
            else None
        )
        for path in (train_path, validation_path):
            if path is not None:
                backend.check_file(path)
        say(f"uploading {exported.examples['train']} training examples to {backend.provider}")
        training_file = backend.upload(train_path)
        validation_file = backend.upload(validation_path) if validation_path else None
        remote, request = backend.create(
            training_file, validation_file, train_examples=exported.examples["train"]
        )
    except (Exception, KeyboardInterrupt, Interrupted) as exc:
        _mark_failed(store, job_id, exc)
        raise
    hosted = {
        "provider": backend.provider,
        "id": remote.id,
        "files": {"train": training_file, "validation": validation_file},
        "request": request,
        "serving": backend.serving(),
    }
    try:
        update_job(
            store,
            job_id,
            status=remote.status if remote.status != JobStatus.SUCCEEDED else JobStatus.RUNNING,
            provider_status=remote.provider_status,
            remote=hosted,
            result=dict(remote.details),
            error=remote.error,
        )
    except InputError:
        # cancelled (`tuneloop jobs cancel`) while it was being submitted: cancel it there too
        stopped = backend.cancel(remote.id)
        update_job(store, job_id, provider_status=stopped.provider_status, remote=hosted)
        raise TrainingError(
            f"job {job_id} was cancelled while it was submitted; {backend.provider} job "
            f"{remote.id} is {stopped.provider_status}"
        ) from None
    say(f"{backend.provider} job {remote.id} is {remote.provider_status} (tuneloop job {job_id})")
    return job_id


def watch(
    store: Store,
    config: Config,
    job_id: int,
    *,
    progress: ProgressCallback | None = None,
    poll_s: float | None = None,
    timeout_s: float | None = None,
    backend: HostedBackend | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Watched:
    """Follow a job until it ends (or ``timeout_s`` passes), registering a hosted job's model.

    Works from any process: the job's row says where it lives. A hosted job that already
    succeeded and was registered returns its version without registering again; one that
    succeeded while nobody watched is registered now. A local job's events are shown as the
    process running it stores them.
    """
    job, _state, _events = get_job(store, job_id, events=0)
    if job.kind != "train":
        raise InputError(f"job {job_id} is a {job.kind} job, not a training job")
    remote = remote_of(job)
    if not remote:
        return _watch_local(store, job_id, progress, poll_s or 1.0, timeout_s, sleep)
    backend = backend or backend_of_job(job.config)
    if poll_s is None:
        poll_s = _hosted_settings(job.config, remote["provider"]).get("poll_s", 10.0)
    known = _known_event_ids(store, job_id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        watched = poll(store, config, job_id, backend=backend, progress=progress, known=known)
        if watched.ended or (deadline is not None and time.monotonic() >= deadline):
            return watched
        sleep(poll_s)


def poll(
    store: Store,
    config: Config,
    job_id: int,
    *,
    backend: HostedBackend | None = None,
    progress: ProgressCallback | None = None,
    known: set[str] | None = None,
) -> Watched:
    """One look at a hosted job: status, new events, checkpoints; register it if it succeeded."""
    job, state, _events = get_job(store, job_id, events=0)
    remote = remote_of(job)
    if not remote:
        raise InputError(f"job {job_id} is a local job; it has no provider to poll")
    registered = _version_of_job(store, job_id)
    if registered is not None:
        return Watched(
            job_id, JobStatus.SUCCEEDED, (job.result or {}).get("provider_status"), registered
        )
    if state in (JobStatus.FAILED, JobStatus.CANCELLED):
        return Watched(job_id, state, (job.result or {}).get("provider_status"), None, job.error)
    backend = backend or backend_of_job(job.config)
    known = known if known is not None else _known_event_ids(store, job_id)
    remote_id = str(remote["id"])
    current = backend.retrieve(remote_id)
    fresh = backend.events(remote_id, frozenset(known))
    checkpoints: list[RemoteCheckpoint] = []
    if current.status in (JobStatus.RUNNING, JobStatus.SUCCEEDED):
        checkpoints = backend.checkpoints(remote_id)
    events = [_progress_event(event) for event in fresh]
    known.update(event.id for event in fresh)
    # Success is recorded by the registration, in its own transaction; until then the row
    # says running, with the provider's "succeeded" beside it.
    status = JobStatus.RUNNING if current.status == JobStatus.SUCCEEDED else current.status
    update_job(
        store,
        job_id,
        status=status,
        provider_status=current.provider_status,
        result={**current.details, "checkpoints": [_checkpoint(c) for c in checkpoints]},
        error=current.error if current.status == JobStatus.FAILED else None,
        events=events,
        behind_ok=True,
    )
    if progress is not None:
        for event in events:
            progress(event)
    if current.status == JobStatus.SUCCEEDED:
        version = finish(store, config, job_id, current, backend=backend, checkpoints=checkpoints)
        return Watched(job_id, JobStatus.SUCCEEDED, current.provider_status, version)
    if current.status == JobStatus.CANCELLED and job.error is None:
        update_job(store, job_id, error=f"cancelled at {backend.provider}")
    return Watched(job_id, current.status, current.provider_status, None, current.error)


def finish(
    store: Store,
    config: Config,
    job_id: int,
    remote: RemoteJob,
    *,
    backend: HostedBackend,
    checkpoints: list[RemoteCheckpoint] | None = None,
) -> ModelVersion:
    """Register a succeeded hosted job's model, exactly once, and mark the job succeeded."""
    if not remote.model_id:
        raise TrainingError(
            f"{backend.provider} job {remote.id} succeeded without naming its model; "
            "`tuneloop train watch` again once it does"
        )
    already = _version_of_job(store, job_id)
    if already is not None:
        return already
    job, _state, _events = get_job(store, job_id, events=0)
    staging = None
    try:
        staging = backend.download(
            remote, config.artifacts_dir / "jobs" / str(job_id) / f"download-{time.time_ns()}"
        )
    except TuneloopError as exc:
        update_job(store, job_id, result={"download_error": str(exc)})
    final_dir = config.artifacts_dir / "models" / job.task / f"job-{job_id}"
    metrics = _training_metrics(remote, checkpoints or [])
    serving = dict(remote_of(job).get("serving") or backend.serving())
    last_error: Exception | None = None
    for _attempt in range(FINISH_ATTEMPTS):
        try:
            with store.session() as session:
                row = lock_job(session, job_id)
                existing = session.scalar(
                    select(ModelVersion).where(ModelVersion.job_id == job_id).limit(1)
                )
                if existing is not None:
                    session.expunge(existing)
                    version = existing
                else:
                    if not can_move(JobStatus(row.status), JobStatus.SUCCEEDED):
                        raise InputError(
                            f"job {job_id} is {row.status} here while {backend.provider} "
                            f"reports {remote.provider_status}; not registering its model"
                        )
                    artifact = _place(staging, final_dir)
                    train = (row.config or {}).get("train") or {}
                    section = train.get(backend.provider) or {}
                    version = register_version(
                        store,
                        session=session,
                        task=row.task,
                        base_model=str(section.get("model") or ""),
                        artifact_path=str(artifact) if artifact else None,
                        dataset_id=row.dataset_id,
                        job_id=job_id,
                        config={
                            **(row.config or {}),
                            "hosted": {"provider": backend.provider, **serving},
                        },
                        metrics={"training": metrics},
                        backend=backend.provider,
                        remote_id=remote.model_id,
                    )
                    row.status, row.finished_at = JobStatus.SUCCEEDED, utcnow()
                    row.result = {
                        **(row.result or {}),
                        "provider_status": remote.provider_status,
                        "model_version": version.name,
                        "remote_model": remote.model_id,
                        "artifact_path": version.artifact_path,
                        **metrics,
                    }
                    session.flush()
                    session.expunge(version)
            if staging is not None and existing is not None:
                _discard(staging)  # another process registered first, with its own download
            return version
        except IntegrityError as exc:
            last_error = exc  # another task writer took the version number: try again
    raise StoreError(f"could not register job {job_id}'s model (conflicting writers): {last_error}")


def cancel(store: Store, job_id: int) -> tuple[JobStatus, str | None]:
    """Cancel a job: a hosted one at its provider, a local one as ``tuneloop jobs cancel`` always
    did. Returns our status and, for a hosted job, the provider's."""
    job, state, _events = get_job(store, job_id, events=0)
    remote = remote_of(job)
    if not remote:
        return cancel_job(store, job_id), None
    if state in ENDED:
        raise InputError(f"job {job_id} already ended ({state})")
    backend = backend_of_job(job.config)
    current = backend.cancel(str(remote["id"]))
    status = current.status if current.status != JobStatus.SUCCEEDED else JobStatus.RUNNING
    updated = update_job(
        store,
        job_id,
        status=status,
        provider_status=current.provider_status,
        error=f"cancelled at {backend.provider} (tuneloop jobs cancel)"
        if current.status == JobStatus.CANCELLED
        else None,
    )
    return JobStatus(updated.status), current.provider_status


# -- helpers ---------------------------------------------------------------------------------


def _watch_local(
    store: Store,
    job_id: int,
    progress: ProgressCallback | None,
    poll_s: float,
    timeout_s: float | None,
    sleep: Callable[[float], None],
) -> Watched:
    """Show a local job's events as its process stores them, until it stops."""
    last_id = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job, state, _events = get_job(store, job_id, events=0)
        with store.session() as session:
            rows = session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > last_id)
                .order_by(JobEvent.id)
            ).all()
            fresh = [(row.id, row.kind, dict(row.data)) for row in rows]
        for event_id, kind, data in fresh:
            last_id = event_id
            if progress is not None:
                progress(ProgressEvent(JobEventKind(kind), data))
        if state in STOPPED or (deadline is not None and time.monotonic() >= deadline):
            version = _version_of_job(store, job_id)
            return Watched(job_id, state, None, version, job.error)
        sleep(poll_s)


def _progress_event(event: RemoteEvent) -> ProgressEvent:
    data: dict[str, Any] = {
        PROVIDER_EVENT_ID: event.id,
        "message": event.message,
        "level": event.level,
    }
    if event.created_at:
        data["at"] = event.created_at
    if "step" in event.metrics:
        metrics = dict(event.metrics)
        if "train_loss" in metrics and "loss" not in metrics:
            metrics["loss"] = metrics["train_loss"]
        return ProgressEvent(JobEventKind.METRIC, {**data, **metrics})
    return ProgressEvent(JobEventKind.LOG, data)


def _checkpoint(checkpoint: RemoteCheckpoint) -> dict[str, Any]:
    return {
        "id": checkpoint.id,
        "step": checkpoint.step,
        "model": checkpoint.model,
        **dict(checkpoint.metrics),
    }


def _training_metrics(remote: RemoteJob, checkpoints: list[RemoteCheckpoint]) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        key: value
        for key, value in remote.details.items()
        if key in ("trained_tokens", "token_count", "n_epochs", "epochs_completed")
    }
    if checkpoints:
        last = max(checkpoints, key=lambda c: c.step)
        for key in ("train_loss", "valid_loss", "full_valid_loss"):
            if key in last.metrics:
                metrics[key] = last.metrics[key]
        metrics["checkpoints_kept"] = len(checkpoints)
    return metrics


def _version_of_job(store: Store, job_id: int) -> ModelVersion | None:
    with store.session() as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id).limit(1))
        if version is not None:
            session.expunge(version)
        return version


def _known_event_ids(store: Store, job_id: int) -> set[str]:
    with store.session() as session:
        return {
            str(data[PROVIDER_EVENT_ID])
            for data in session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id))
            if isinstance(data, dict) and data.get(PROVIDER_EVENT_ID) is not None
        }


def _hosted_settings(config: dict[str, Any], provider: str) -> dict[str, Any]:
    section = ((config or {}).get("train") or {}).get(provider)
    return section if isinstance(section, dict) else {}


def _place(staging: Path | None, final_dir: Path) -> Path | None:
    """Move downloaded weights into the version's folder (only the registering process does;
    a retried registration finds them already there)."""
    if staging is None:
        return None
    target = final_dir / staging.name
    if staging.exists():
        if final_dir.exists():
            shutil.rmtree(final_dir)  # left by an attempt that never registered
        final_dir.mkdir(parents=True)
        shutil.move(str(staging), str(target))
    return target


def _discard(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _mark_failed(store: Store, job_id: int, exc: BaseException) -> None:
    cancelled = isinstance(exc, KeyboardInterrupt | Interrupted)
    message = (
        str(exc) if isinstance(exc, TuneloopError | Interrupted) else f"{type(exc).__name__}: {exc}"
    )
    # the original error matters more than a store that cannot record it (the row then
    # shows stale once this process is gone)
    with contextlib.suppress(TuneloopError):
        update_job(
            store,
            job_id,
            status=JobStatus.CANCELLED if cancelled else JobStatus.FAILED,
            error=message or type(exc).__name__,
        )


def _say(progress: ProgressCallback | None) -> Callable[[str], None]:
    def say(message: str) -> None:
        if progress is not None:
            progress(ProgressEvent(JobEventKind.LOG, {"message": message}))

    return say
