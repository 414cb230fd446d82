"""Logging gateway calls off the request path, losing none and writing none twice.

A request hands its record to :meth:`CallLog.submit`, which only appends to a bounded queue. One
writer thread takes records in batches and writes each batch in one capture transaction
(``Tuneloop.log_many``). When the store fails, the batch and every later one are appended to this
process's spill file (JSON lines) instead; once a write succeeds again, the file is replayed in
order and removed. Every record carries the call's id as its idempotency key, so a batch written
twice (a crash between commit and truncation, a replay that was cut short) still stores each call
once. A spill file left by a process that died is claimed (its lock is free) and replayed too.

Records of opted-out tenants never reach this module: the gateway drops them before submitting.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from tuneloop.errors import InputError, StoreError

Record = dict[str, Any]
RETRY_S = 1.0  # how often a down store is tried again
# A record written within this long of its call is stored as live traffic: capture stamps it
# and takes its batched path. Older ones (a backlog, the spill file) keep their call's time.
LIVE_S = 2.0
Queued = tuple[float, Record]  # (time.monotonic() at submit, record)


class CallWriter(Protocol):
    """What the log writes through: capture's ``Tuneloop.log_many``."""

    def log_many(self, records: Iterable[Mapping[str, Any]]) -> list[str | None]: ...


class CallLog:
    """A bounded queue, one writer thread, batched writes and a spill file (see the module doc)."""

    def __init__(
        self,
        client: CallWriter,
        *,
        spill_dir: Path,
        retry_s: float = RETRY_S,
        queue_size: int = 10_000,
        batch_size: int = 256,
        flush_s: float = 0.2,
        on_written: Callable[[int], None] | None = None,
        on_spilled: Callable[[int], None] | None = None,
        on_rejected: Callable[[Record, str], None] | None = None,
    ) -> None:
        self.client = client
        self.spill_dir = spill_dir
        self.batch_size = batch_size
        self.retry_s = retry_s
        self.flush_s = flush_s
        self._queue: queue.Queue[Queued] = queue.Queue(maxsize=queue_size)
        self._on_written = on_written or (lambda _count: None)
        self._on_spilled = on_spilled or (lambda _count: None)
        self._on_rejected = on_rejected or (lambda _record, _problem: None)
        self._spill_lock = threading.Lock()
        self._spill_path = spill_dir / f"spill-{os.getpid()}-{time.time_ns()}.jsonl"
        self._spill: IO[str] | None = None
        self._spilled_lines = 0
        self._in_flight: list[Queued] = []  # taken from the queue, not yet stored or spilled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuneloop-call-log", daemon=True)
        self._next_retry = 0.0
        self.store_ok = True
        self.written = 0

    # -- request side ------------------------------------------------------------------------

    def submit(self, record: Record) -> None:
        """Queue one record; when the queue is full it goes straight to the spill file."""
        try:
            self._queue.put_nowait((time.monotonic(), record))
        except queue.Full:
            self._append_spill([record])

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def spilled(self) -> int:
        """Records in this process's spill file, waiting for the store."""
        return self._spilled_lines

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Drain: write what is queued (or spill it when the store is down), then stop.

        A writer still busy after ``timeout`` (a slow store) is left to finish, but the batch
        it holds is spilled with the rest of the queue first: the process may exit before that
        write commits. Should it commit after all, the spilled copy is stored once on replay
        (idempotency keys)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        leftover = self._take_all()
        if self._thread.is_alive():
            leftover = list(self._in_flight) + leftover
        if leftover:
            self._append_spill([record for _, record in leftover])
        with self._spill_lock:
            if self._spill is not None:
                self._spill.close()
                self._spill = None

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        self._claim_orphans()
        while True:
            batch = self._take_batch()
            if batch:
                self._write_or_spill(batch)
                self._in_flight = []
            elif self._spilled_lines and time.monotonic() >= self._next_retry:
                self._replay_own()
            if self._stop.is_set() and self._queue.empty():
                if self._spilled_lines:  # one last try, whatever the retry clock says
                    self._next_retry = 0.0
                    self._replay_own()
                return

    def _take_batch(self) -> list[Queued]:
        """Up to ``batch_size`` records; gathered in ``_in_flight``, where ``close`` sees them."""
        batch: list[Queued] = []
        self._in_flight = batch
        try:
            batch.append(self._queue.get(timeout=self.flush_s))
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.flush_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                if self._stop.is_set() or time.monotonic() >= deadline:
                    break
                time.sleep(min(0.005, self.flush_s))
        return batch

    def _take_all(self) -> list[Queued]:
        records = []
        while True:
            try:
                records.append(self._queue.get_nowait())
            except queue.Empty:
                return records

    def _write_or_spill(self, batch: list[Queued]) -> None:
        """Keep order: while older records wait in the spill file, newer ones join them there."""
        records = [record for _, record in batch]
        if self._spilled_lines and not self._replay_own():
            self._append_spill(records)
            return
        now = time.monotonic()
        live = [
            {key: value for key, value in record.items() if key != "created_at"}
            if now - submitted < LIVE_S
            else record
            for submitted, record in batch
        ]
        if not self._write(live):
            self._append_spill(records)

    def _write(self, batch: list[Record]) -> bool:
        if not self.store_ok and time.monotonic() < self._next_retry:
            return False
        try:
            try:
                self.client.log_many(batch)
                stored = len(batch)
            except InputError:
                stored = self._write_one_by_one(batch)
        except StoreError:
            self.store_ok = False
            self._next_retry = time.monotonic() + self.retry_s
            return False
        self.store_ok = True
        self.written += stored
        self._on_written(stored)
        return True

    def _write_one_by_one(self, batch: list[Record]) -> int:
        """A batch capture refused as a whole: store the good records, report the others."""
        stored = 0
        for record in batch:
            try:
                self.client.log_many([record])
                stored += 1
            except InputError as exc:
                self._on_rejected(record, str(exc))
        return stored

    def _append_spill(self, records: list[Record]) -> None:
        with self._spill_lock:
            if self._spill is None:
                self.spill_dir.mkdir(parents=True, exist_ok=True)
                self._spill = self._spill_path.open("a", encoding="utf-8")
                fcntl.flock(self._spill, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for record in records:
                self._spill.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._spill.flush()
            os.fsync(self._spill.fileno())
            self._spilled_lines += len(records)
        self._on_spilled(len(records))

    def _replay_own(self) -> bool:
        """Write this process's spill file in order; True when it is gone."""
        with self._spill_lock:
            if self._spill is None:
                self._spilled_lines = 0
                return True
            self._spill.flush()
            done = self._replay_file(self._spill_path)
            if done:
                self._spill.close()
                self._spill = None
                self._spill_path.unlink(missing_ok=True)
                self._spilled_lines = 0
            return done

    def _replay_file(self, path: Path) -> bool:
        """Write a spill file's records in batches, in order; False when the store fails."""
        batch: list[Record] = []
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    batch.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash mid-write: that call never returned
                if len(batch) >= self.batch_size:
                    if not self._write(batch):
                        return False
                    batch = []
        return not batch or self._write(batch)

    def _claim_orphans(self) -> None:
        """Replay spill files whose process is gone (their lock is free)."""
        for path in sorted(self.spill_dir.glob("spill-*.jsonl")):
            if path == self._spill_path:
                continue
            try:
                handle = path.open("a+", encoding="utf-8")
            except OSError:
                continue
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live process owns it
                if self._replay_file(path):
                    path.unlink(missing_ok=True)
