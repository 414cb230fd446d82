"""Recording a job's life in the store: status, progress events, heartbeat, result or error.

A job survives what stops it with a record of why: SIGTERM (``docker stop``, systemd,
Kubernetes) marks it ``interrupted``, Ctrl-C or ``tuneloop jobs cancel`` marks it ``cancelled``,
an error marks it ``failed``. A process that dies without a word (SIGKILL, power loss) stops
its heartbeat, and the job shows as ``stale``.

One state machine serves every backend (``TRANSITIONS``): queued → running → succeeded | failed
| cancelled, plus interrupted and stale for a local process that stopped (either may be
resumed). A hosted job (OpenAI, Together) runs at its provider, not in a process of ours: its
row keeps the provider's job id and own status under ``config["remote"]``, any process moves it
with :func:`update_job` as it polls, and it is never ``stale`` (nothing of ours has to beat).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType, TracebackType
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tuneloop.errors import InputError, Interrupted, StoreError
from tuneloop.store.engine import Store
from tuneloop.store.models import Job, JobEvent, JobEventKind, JobStatus, ModelVersion, utcnow

FLUSH_EVERY_S = 1.0
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0  # six missed heartbeats
FINAL = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.INTERRUPTED,
        JobStatus.STALE,
    }
)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Where a job may go from each status; staying put (a new provider status) is always allowed.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.INTERRUPTED,
            JobStatus.STALE,
        }
    ),
    JobStatus.INTERRUPTED: frozenset({JobStatus.RUNNING}),  # resumed
    JobStatus.STALE: frozenset({JobStatus.RUNNING}),  # resumed
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}
REMOTE = "remote"  # job.config[REMOTE]: the hosted job's provider, id and files
PROVIDER_EVENT_ID = "provider_event_id"  # job event data key that makes provider events unique


@contextmanager
def stop_on_signals(what: str) -> Iterator[None]:
    """Inside, SIGTERM and SIGINT raise :class:`Interrupted` in the main thread, so ``finally``
    blocks and transactions unwind instead of the process vanishing mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signal_number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signal_number).name
        raise Interrupted(f"{what} stopped by {name}", signal_number=signal_number)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclass(frozen=True)
class ProgressEvent:
    """One thing a job reports: a metric at a step, a log line, or progress. The same object
    goes to the store (``JobRecorder.event``) and to whoever shows progress."""

    kind: JobEventKind
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", JobEventKind(self.kind))  # ValueError for unknown kinds

    @property
    def step(self) -> int | None:
        step = self.data.get("step")
        return step if isinstance(step, int) else None


# The one callback signature for progress, from the recipe up to the CLI and the demo.
ProgressCallback = Callable[[ProgressEvent], None]


class JobRecorder:
    """Context manager around a job: marks it running, buffers events, beats, records the end.

    Events are flushed at most once a second so a fast training loop does not wait on the
    database; anything buffered is written when the job ends, including on failure. A
    background thread refreshes the heartbeat and picks up a cancel request, which stops the
    job at its next :meth:`event` (or :meth:`check`).
    """

    def __init__(
        self,
        store: Store,
        *,
        kind: str,
        task: str,
        backend: str = "local",
        dataset_id: int | None = None,
        config: dict[str, Any] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.store = store
        self.heartbeat_s = heartbeat_s
        self._attach(
            create_job(
                store, kind=kind, task=task, backend=backend, dataset_id=dataset_id, config=config
            )
        )

    @classmethod
    def reopen(
        cls, store: Store, job_id: int, *, after_step: int, heartbeat_s: float = HEARTBEAT_S
    ) -> JobRecorder:
        """Continue a stopped local job in this process (``tuneloop train resume``): the same
        row, if the state machine lets it run again (interrupted or stale), owned by this
        process with its error cleared; events past ``after_step`` (the checkpoint it resumes
        from) are deleted, since the resumed run records those steps again."""
        with store.session() as session:
            job = lock_job(session, job_id)
            state = effective_status(job)
            if not can_move(state, JobStatus.RUNNING) or state == JobStatus.RUNNING:
                raise InputError(
                    f"job {job_id} is {state}; only an interrupted or stale (killed) job can be "
                    "resumed"
                )
            job.error, job.finished_at = None, None
            job.cancel_requested_at = None
            job.pid, job.host, job.heartbeat_at = os.getpid(), socket.gethostname()[:200], utcnow()
            session.execute(
                delete(JobEvent).where(JobEvent.job_id == job_id, JobEvent.step > after_step)
            )
        recorder = cls.__new__(cls)
        recorder.store, recorder.heartbeat_s = store, heartbeat_s
        recorder._attach(job_id)
        return recorder

    def _attach(self, job_id: int) -> None:
        self.job_id: int = job_id
        self._buffer: list[JobEvent] = []
        self._last_flush = time.monotonic()
        self._result: dict[str, Any] = {}
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._beat: threading.Thread | None = None
        self._signals = stop_on_signals(f"job {self.job_id}")

    def __enter__(self) -> JobRecorder:
        with self.store.session() as session:
            job = session.get_one(Job, self.job_id)
            job.status, job.heartbeat_at = JobStatus.RUNNING, utcnow()
            job.started_at = job.started_at or utcnow()  # a resumed job keeps its start
        self._signals.__enter__()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"job-{self.job_id}-heartbeat", daemon=True
        )
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        """Refresh ``heartbeat_at``; notice a cancel request. Misses a beat if the store is
        briefly unreachable rather than killing the job."""
        while not self._done.wait(self.heartbeat_s):
            try:
                with self.store.session() as session:
                    job = session.get_one(Job, self.job_id)
                    job.heartbeat_at = utcnow()
                    if job.cancel_requested_at is not None:
                        self._cancel.set()
            except (StoreError, SQLAlchemyError):
                continue

    def check(self) -> None:
        """Raise :class:`Interrupted` if the job was asked to stop (``tuneloop jobs cancel``)."""
        if self._cancel.is_set():
            raise Interrupted(f"job {self.job_id} cancelled (tuneloop jobs cancel)")

    def event(self, event: ProgressEvent) -> None:
        self.check()
        self._buffer.append(
            JobEvent(job_id=self.job_id, kind=event.kind, step=event.step, data=dict(event.data))
        )
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        with self.store.session() as session:
            session.add_all(self._buffer)
        self._buffer = []
        self._last_flush = time.monotonic()

    def succeed(self, result: dict[str, Any]) -> None:
        self._result = result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._beat is not None:
            self._beat.join()
        try:
            self.flush()
            with self.store.session() as session:
                job = session.get_one(Job, self.job_id)
                job.finished_at = job.heartbeat_at = utcnow()
                registered = session.scalar(
                    select(ModelVersion).where(ModelVersion.job_id == self.job_id).limit(1)
                )
                if exc is None:
                    job.status, job.result = JobStatus.SUCCEEDED, self._result
                elif registered is not None:
                    # The stop came after the version was registered, weights in place: the
                    # work is done and whole, so the job is too.
                    job.status = JobStatus.SUCCEEDED
                    job.result = {
                        "model_version": registered.name,
                        "artifact_path": registered.artifact_path,
                        "note": f"stopped after registering: {_describe(exc)}",
                    }
                else:
                    job.status, job.error = _ending(exc), _describe(exc)
        finally:
            self._signals.__exit__(None, None, None)


def _ending(exc: BaseException) -> JobStatus:
    if isinstance(exc, Interrupted) and exc.signal_number == signal.SIGTERM:
        return JobStatus.INTERRUPTED  # asked to stop by the system: may be resumed
    if isinstance(exc, Interrupted | KeyboardInterrupt):
        return JobStatus.CANCELLED  # Ctrl-C or a cancel request: the user's choice
    return JobStatus.FAILED


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Interrupted):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled by Ctrl-C (SIGINT)"
    return f"{type(exc).__name__}: {exc}"


def effective_status(
    job: Job, now: datetime | None = None, stale_after_s: float = STALE_AFTER_S
) -> JobStatus:
    """The job's status, or ``stale`` for an unfinished job whose process is gone: no heartbeat
    for ``stale_after_s``, or (on this machine) no process with its pid."""
    status = JobStatus(job.status)
    if status in FINAL or remote_of(job):
        return status  # a hosted job lives at its provider: no process of ours beats for it
    now = now or utcnow()
    beat = job.heartbeat_at or job.started_at or job.created_at
    if beat is not None and _aware(beat) < now - timedelta(seconds=stale_after_s):
        return JobStatus.STALE
    if job.pid is not None and job.host == socket.gethostname() and not _alive(job.pid):
        return JobStatus.STALE
    return status


def list_jobs(
    store: Store, *, kind: str | None = None, status: JobStatus | None = None, limit: int = 50
) -> list[tuple[Job, JobStatus]]:
    """The newest jobs with their effective status (``stale`` computed, not stored)."""
    query = select(Job).order_by(Job.id.desc())
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None and status is not JobStatus.STALE:
        query = query.where(Job.status == status)
    elif status is JobStatus.STALE:
        query = query.where(Job.status.in_([JobStatus.STALE, JobStatus.QUEUED, JobStatus.RUNNING]))
    with store.session() as session:
        rows = [(job, effective_status(job)) for job in session.scalars(query.limit(limit))]
    return [(job, state) for job, state in rows if status is None or state == status]


def get_job(
    store: Store, job_id: int, *, events: int = 20
) -> tuple[Job, JobStatus, list[JobEvent]]:
    """One job, its effective status and its last ``events`` events (oldest first)."""
    with store.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise InputError(f"no job {job_id} in the store")
        last = session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id)
            .order_by(JobEvent.id.desc())
            .limit(events)
        ).all()
        return job, effective_status(job), list(reversed(last))


def cancel_job(store: Store, job_id: int) -> JobStatus:
    """Stop a job: a running one is asked to stop at its next step (its status follows when it
    does); a queued one is cancelled; one whose process is gone is cleared as ``stale``.
    Returns the status the job has now (``running`` while the request is pending)."""
    with store.session() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise InputError(f"no job {job_id} in the store")
        state = effective_status(job)
        if state in FINAL and JobStatus(job.status) in FINAL:
            raise InputError(f"job {job_id} already ended ({job.status})")
        now = utcnow()
        if state is JobStatus.STALE:
            beat = job.heartbeat_at.isoformat(timespec="seconds") if job.heartbeat_at else "never"
            job.status, job.finished_at = JobStatus.STALE, now
            job.error = f"its process stopped without a word (last heartbeat {beat}); cleared"
        elif state is JobStatus.QUEUED:
            job.status, job.finished_at = JobStatus.CANCELLED, now
            job.error = "cancelled before it started (tuneloop jobs cancel)"
        else:
            job.cancel_requested_at = now
        return JobStatus(job.status)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # signal 0 is not a probe on Windows: rely on the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or not checkable here)
    return True


def remote_of(job: Job) -> dict[str, Any]:
    """The hosted part of a job (provider, its job id, uploaded files); empty for local jobs."""
    remote = (job.config or {}).get(REMOTE)
    return remote if isinstance(remote, dict) and remote.get("id") else {}


def can_move(before: JobStatus, after: JobStatus) -> bool:
    """Whether the state machine allows ``before`` → ``after``."""
    return after == before or after in TRANSITIONS[before]


def create_job(
    store: Store,
    *,
    kind: str,
    task: str,
    backend: str = "local",
    dataset_id: int | None = None,
    config: dict[str, Any] | None = None,
) -> int:
    """A new queued job row, owned by this process until it hands the job to a provider."""
    with store.session() as session:
        job = Job(
            kind=kind,
            task=task,
            backend=backend,
            dataset_id=dataset_id,
            config=config or {},
            status=JobStatus.QUEUED,
            heartbeat_at=utcnow(),
            pid=os.getpid(),
            host=socket.gethostname()[:200],
        )
        session.add(job)
    return job.id


def lock_job(session: Session, job_id: int) -> Job:
    """The job row, locked until the session's transaction ends, so two processes that poll
    the same hosted job (two ``watch``es) change it one after the other."""
    if session.get_bind().dialect.name == "sqlite":
        # a write as the first statement takes SQLite's write lock for the whole transaction
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=Job.heartbeat_at))
        job = session.get(Job, job_id, populate_existing=True)
    else:
        job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise InputError(f"no job {job_id} in the store")
    return job


def update_job(
    store: Store,
    job_id: int,
    *,
    status: JobStatus | None = None,
    provider_status: str | None = None,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
    remote: Mapping[str, Any] | None = None,
    events: Sequence[ProgressEvent] = (),
    behind_ok: bool = False,
) -> Job:
    """Move a job through the state machine and record what its provider reported.

    ``remote`` merges into ``config["remote"]`` (the provider's job id, its files),
    ``provider_status`` and ``result`` into ``result``; ``events`` carrying a
    ``provider_event_id`` already stored for this job are skipped, so polling the same
    provider log twice (or from two processes) stores each event once. A move the state
    machine does not allow (a finished job starting again) is an :class:`InputError`, unless
    ``behind_ok``: a poll that saw an older state than another process already recorded (queued
    after running, or anything after a final state) then leaves the newer status as it is.
    """
    with store.session() as session:
        job = lock_job(session, job_id)
        before = JobStatus(job.status)
        now = utcnow()
        behind = False
        if status is not None and status != before:
            if not can_move(before, status):
                # A poll that read the provider before another process recorded a later state
                # (queued after running, anything after a final state) is behind, not an error.
                behind = behind_ok and (before in FINAL or status == JobStatus.QUEUED)
                if not behind:
                    raise InputError(f"job {job_id} is {before}; it cannot become {status}")
                status = before
            job.status = status
            if status == JobStatus.RUNNING and job.started_at is None:
                job.started_at = now
            if status in FINAL:
                job.finished_at = now
                job.started_at = job.started_at or now
        if remote:
            config = dict(job.config or {})
            config[REMOTE] = {**(config.get(REMOTE) or {}), **remote}
            job.config = config
        if provider_status is not None or result:
            merged = dict(job.result or {})
            if provider_status is not None and not behind:
                merged["provider_status"] = provider_status
            merged.update(result or {})
            job.result = merged
        if error is not None:
            job.error = error
        job.heartbeat_at = now
        if events:
            known = {
                str(data.get(PROVIDER_EVENT_ID))
                for data in session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id))
                if isinstance(data, dict) and data.get(PROVIDER_EVENT_ID) is not None
            }
            for event in events:
                key = event.data.get(PROVIDER_EVENT_ID)
                if key is not None and str(key) in known:
                    continue
                if key is not None:
                    known.add(str(key))
                session.add(
                    JobEvent(job_id=job_id, kind=event.kind, step=event.step, data=dict(event.data))
                )
        session.flush()
        session.expunge(job)
        return job
