"""Recording a job's life in the store: status, progress events, result or error."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from tuneloop.store.engine import Store
from tuneloop.store.models import Job, JobEvent, JobEventKind, JobStatus, utcnow

FLUSH_EVERY_S = 1.0


class JobRecorder:
    """Context manager around a job: marks it running, buffers events, records how it ended.

    Events are flushed at most once a second so a fast training loop does not wait on the
    database; anything buffered is written when the job ends, including on failure.
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
    ) -> None:
        self.store = store
        with store.session() as session:
            job = Job(
                kind=kind,
                task=task,
                backend=backend,
                dataset_id=dataset_id,
                config=config or {},
                status=JobStatus.QUEUED,
            )
            session.add(job)
        self.job_id: int = job.id
        self._buffer: list[JobEvent] = []
        self._last_flush = time.monotonic()

    def __enter__(self) -> JobRecorder:
        with self.store.session() as session:
            job = session.get_one(Job, self.job_id)
            job.status, job.started_at = JobStatus.RUNNING, utcnow()
        return self

    def event(self, kind: JobEventKind | str, data: dict[str, Any]) -> None:
        self._buffer.append(
            JobEvent(job_id=self.job_id, kind=JobEventKind(kind), step=data.get("step"), data=data)
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
        self.flush()
        with self.store.session() as session:
            job = session.get_one(Job, self.job_id)
            job.finished_at = utcnow()
            if exc is None:
                job.status, job.result = JobStatus.SUCCEEDED, getattr(self, "_result", {})
            else:
                job.status = (
                    JobStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else JobStatus.FAILED
                )
                job.error = f"{type(exc).__name__}: {exc}"
