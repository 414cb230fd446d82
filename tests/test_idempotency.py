"""Nothing duplicated: idempotency keys on logs and imports, and typed job states."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tuneloop.capture.client import Tuneloop
from tuneloop.capture.importer import import_jsonl
from tuneloop.capture.records import call_key, content_hash, prepare_log, prompt_hash
from tuneloop.config import Config
from tuneloop.errors import InputError
from tuneloop.store import Feedback, Interaction, Job, JobEvent, JobEventKind, JobStatus
from tuneloop.store.jobs import JobRecorder, ProgressEvent

PROMPT = [{"role": "user", "content": "Design a settings screen"}]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ConfigFactory = Callable[..., Config]


def count(client: Tuneloop, model: type[Any] = Interaction) -> int:
    with client.store.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _lines(n: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [{"role": "user", "content": f"prompt {i}"}],
            "response": f"answer {i}",
            "feedback": [{"kind": "thumbs_up"}] if i % 3 == 0 else [],
        }
        for i in range(n)
    ]


def test_importing_the_same_file_twice_creates_nothing_new(
    client: Tuneloop, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "calls.jsonl", _lines(10))
    first = import_jsonl(client, path)
    assert (first.imported, first.present, first.feedback) == (10, 0, 4)
    second = import_jsonl(client, path)
    assert (second.imported, second.present, second.feedback) == (0, 10, 0)
    assert count(client) == 10 and count(client, Feedback) == 4
    assert "0 imported, 0 skipped (bad lines), 10 already present" in second.summary()


def test_an_interrupted_import_run_again_equals_one_clean_import(
    client: Tuneloop, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "calls.jsonl", _lines(9))
    calls = 0

    def die(_done: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:  # lines 1-4 are committed in two batches, line 5 is pending
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_jsonl(client, path, batch_lines=2, progress=die)
    assert count(client) == 4
    report = import_jsonl(client, path, batch_lines=2)
    assert (report.imported, report.present) == (5, 4)
    assert count(client) == 9 and count(client, Feedback) == 3


def test_equal_lines_in_one_file_stay_several_calls(client: Tuneloop, tmp_path: Path) -> None:
    line = {"messages": PROMPT, "response": "same"}
    path = _jsonl(tmp_path / "calls.jsonl", [line, line, line])
    assert import_jsonl(client, path).imported == 3
    assert import_jsonl(client, path).present == 3
    assert count(client) == 3


def test_a_line_id_is_its_idempotency_key(client: Tuneloop, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"id": "call-1", "messages": PROMPT, "response": "x"}])
    other = _jsonl(tmp_path / "b.jsonl", [{"id": "call-1", "messages": PROMPT, "response": "y"}])
    assert import_jsonl(client, path).imported == 1
    assert import_jsonl(client, other).present == 1  # same id: the same call, whatever it says
    with client.store.session() as session:
        row = session.scalars(select(Interaction)).one()
    assert (row.idempotency_key, row.response, row.metadata_) == ("call-1", "x", {})


def test_log_with_an_id_or_a_time_is_idempotent(client: Tuneloop) -> None:
    first = client.log(PROMPT, "a", id="req-42")
    assert first is not None
    assert client.log(PROMPT, "a", id="req-42") == first
    dated = client.log(PROMPT, "b", created_at=T0)
    assert client.log(PROMPT, "b", created_at=T0.isoformat()) == dated
    assert client.log(PROMPT, "b", created_at=T0, tenant="t") != dated
    # Without an id or a time, each call is its own: the moment it was logged is part of it.
    assert client.log(PROMPT, "c") != client.log(PROMPT, "c")
    ids = client.log_many([{"messages": PROMPT, "response": "d"}] * 3)
    assert len(set(ids)) == 3
    assert count(client) == 1 + 2 + 2 + 3


def test_log_many_in_one_batch_with_a_repeated_id_stores_one(client: Tuneloop) -> None:
    ids = client.log_many([{"messages": PROMPT, "response": "x", "id": "k"}] * 2)
    assert ids[0] == ids[1] and count(client) == 1


@pytest.mark.parametrize("bad", ["", "  ", 7, "x" * 201])
def test_a_bad_id_is_refused(client: Tuneloop, bad: Any) -> None:
    with pytest.raises(InputError, match="id "):
        client.log(PROMPT, "x", id=bad)


def test_the_call_hash_reuses_the_content_hash() -> None:
    values = prepare_log(PROMPT, "x", created_at=T0)
    assert values["prompt_hash"] == prompt_hash(PROMPT) == content_hash(PROMPT)
    assert call_key(values) == call_key({**values, "valid_json": True})
    assert call_key(values, 1) == f"{call_key(values)}#1"
    assert call_key(values) != call_key(prepare_log(PROMPT, "y", created_at=T0))


def test_job_states_and_event_kinds_are_typed(store_url: str) -> None:
    from tuneloop.store import Store

    store = Store(store_url)
    with JobRecorder(store, kind="train", task="t") as job:
        job.event(ProgressEvent(JobEventKind.METRIC, {"step": 1, "loss": 2.0}))
        job.event(ProgressEvent(JobEventKind.LOG, {"message": "hello"}))
        with pytest.raises(ValueError):
            ProgressEvent("chatter", {})  # type: ignore[arg-type]
        job.succeed({"ok": True})
    with store.session() as session:
        row = session.get_one(Job, job.job_id)
        kinds = session.scalars(select(JobEvent.kind).order_by(JobEvent.id)).all()
    assert row.status == JobStatus.SUCCEEDED and JobStatus(row.status) is JobStatus.SUCCEEDED
    assert kinds == [JobEventKind.METRIC, JobEventKind.LOG]
    assert {status.value for status in JobStatus} == {
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "interrupted",
        "stale",
    }
    store.close()
