"""The call log: the store goes away under load, a process dies with a spill file; every call
arrives once, in order of its spill file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tuneloop.capture.client import Tuneloop
from tuneloop.config import Config
from tuneloop.errors import StoreError
from tuneloop.gateway.calllog import CallLog
from tuneloop.store import Interaction


class Outage:
    """Capture's writer with a switch: while ``down`` every write fails like a lost database."""

    def __init__(self, client: Tuneloop) -> None:
        self.client = client
        self.down = threading.Event()
        self.failed_writes = 0

    def log_many(self, records: Iterable[Mapping[str, Any]]) -> list[str | None]:
        if self.down.is_set():
            self.failed_writes += 1
            raise StoreError("store postgresql://db failed: connection refused")
        return self.client.log_many(records)


def record(number: int) -> dict[str, Any]:
    return {
        "id": f"call-{number:06d}",
        "messages": [{"role": "user", "content": f"q{number}"}],
        "response": "{}",
        "task": "t",
        "source": "gateway",
        "created_at": f"2026-01-01T00:00:{number % 60:02d}+00:00",
    }


def stored_keys(client: Tuneloop) -> list[str]:
    with client.store.session() as session:
        return list(session.scalars(select(Interaction.idempotency_key)))


def test_store_down_under_load_every_row_arrives_once(config_factory: Any, tmp_path: Path) -> None:
    config: Config = config_factory()
    client = Tuneloop(config)
    outage = Outage(client)
    log = CallLog(
        outage,
        spill_dir=tmp_path / "spill",
        queue_size=64,
        batch_size=50,
        flush_s=0.01,
        retry_s=0.05,
    )
    log.start()
    total, writers = 600, 4

    def produce(offset: int) -> None:
        for number in range(offset, total, writers):
            log.submit(record(number))
            if number % 50 == 0:
                time.sleep(0.01)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    time.sleep(0.02)
    outage.down.set()  # the store stops while calls keep coming
    time.sleep(0.25)
    spilled_while_down = log.spilled
    outage.down.clear()
    for thread in threads:
        thread.join()
    log.close()
    keys = stored_keys(client)
    assert outage.failed_writes > 0 and spilled_while_down > 0
    assert len(keys) == total and len(set(keys)) == total
    assert not list((tmp_path / "spill").glob("*.jsonl"))  # replayed and removed
    client.close()


def test_closing_while_the_store_is_down_keeps_calls_for_the_next_process(
    config_factory: Any, tmp_path: Path
) -> None:
    config: Config = config_factory()
    client = Tuneloop(config)
    outage = Outage(client)
    outage.down.set()
    first = CallLog(outage, spill_dir=tmp_path / "spill", flush_s=0.01, retry_s=0.05)
    first.start()
    for number in range(30):
        first.submit(record(number))
    first.close()  # SIGTERM with the store down: nothing written, nothing lost
    [spill] = list((tmp_path / "spill").glob("*.jsonl"))
    lines = spill.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"call-{n:06d}" for n in range(30)]
    # Part of the file had reached the store before the process died: stored once anyway.
    client.log_many([record(n) for n in range(10)])
    spill.write_text("\n".join(lines) + '\n{"id": "cut short', encoding="utf-8")
    second = CallLog(client, spill_dir=tmp_path / "spill", flush_s=0.01)
    second.start()
    deadline = time.monotonic() + 10
    while spill.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second.close()
    keys = stored_keys(client)
    assert sorted(keys) == [f"call-{n:06d}" for n in range(30)]
    with client.store.session() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 30
    client.close()


def test_a_record_capture_refuses_is_reported_and_the_rest_stored(
    config_factory: Any, tmp_path: Path
) -> None:
    client = Tuneloop(config_factory())
    refused: list[str] = []
    log = CallLog(
        client,
        spill_dir=tmp_path / "spill",
        flush_s=0.01,
        on_rejected=lambda rec, problem: refused.append(rec["id"]),
    )
    log.start()
    bad = {**record(1), "messages": [{"role": "narrator", "content": "x"}]}
    for item in (record(0), bad, record(2)):
        log.submit(item)
    log.close()
    assert refused == ["call-000001"]
    assert sorted(stored_keys(client)) == ["call-000000", "call-000002"]
    client.close()


class Stuck:
    """Capture's writer on a store that hangs: the first write waits until released."""

    def __init__(self, client: Tuneloop) -> None:
        self.client = client
        self.entered = threading.Event()
        self.release = threading.Event()

    def log_many(self, records: Iterable[Mapping[str, Any]]) -> list[str | None]:
        records = list(records)
        self.entered.set()
        self.release.wait(10)
        return self.client.log_many(records)


def test_closing_while_a_write_hangs_spills_the_batch_in_flight_too(
    config_factory: Any, tmp_path: Path
) -> None:
    config: Config = config_factory()
    client = Tuneloop(config)
    stuck = Stuck(client)
    log = CallLog(stuck, spill_dir=tmp_path / "spill", batch_size=5, flush_s=0.01)
    log.start()
    for number in range(5):
        log.submit(record(number))
    assert stuck.entered.wait(5)  # the writer holds calls 0-4 in a write that does not return
    for number in range(5, 8):
        log.submit(record(number))
    log.close(timeout=0.2)  # shutdown gives up on the writer: the process may now exit
    [spill] = list((tmp_path / "spill").glob("*.jsonl"))
    spilled = [json.loads(line)["id"] for line in spill.read_text().splitlines()]
    assert spilled == [f"call-{n:06d}" for n in range(8)]  # in flight first, then the queue
    # The hung write commits after all; the next process replays the file: each call once.
    stuck.release.set()
    deadline = time.monotonic() + 10
    while len(stored_keys(client)) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    second = CallLog(client, spill_dir=tmp_path / "spill", flush_s=0.01)
    second.start()
    while spill.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second.close()
    assert sorted(stored_keys(client)) == [f"call-{n:06d}" for n in range(8)]
    client.close()
