"""Registry: version numbering per task, lookup, stages and the job recorder."""

from __future__ import annotations

import pytest

from tuneloop.errors import InputError
from tuneloop.registry import list_versions, register_version, resolve_version, set_stage
from tuneloop.store import Job, Store
from tuneloop.store.jobs import JobRecorder


@pytest.fixture
def store(store_url: str) -> Store:
    return Store(store_url)


def test_versions_are_numbered_per_task(store: Store) -> None:
    first = register_version(store, task="a", base_model="m", artifact_path="/x/1")
    second = register_version(
        store, task="a", base_model="m", artifact_path="/x/2", parent_id=first.id
    )
    other = register_version(store, task="b", base_model="m", artifact_path="/y/1")
    assert (first.name, second.name, other.name) == ("v1", "v2", "v1")
    assert second.parent_id == first.id
    assert [v.name for v in list_versions(store, "a")] == ["v1", "v2"]


def test_resolve_by_number_name_latest_and_stage(store: Store) -> None:
    for _ in range(3):
        register_version(store, task="t", base_model="m", artifact_path=None)
    assert resolve_version(store, "t", "v2").version == 2
    assert resolve_version(store, "t", 3).version == 3
    assert resolve_version(store, "t", "latest").version == 3
    set_stage(store, "t", "v1", "production")
    assert resolve_version(store, "t", "production").version == 1
    with pytest.raises(InputError, match="known: v1, v2, v3"):
        resolve_version(store, "t", "v9")
    with pytest.raises(InputError, match="not a version"):
        resolve_version(store, "t", "vx")


def test_new_production_archives_the_previous(store: Store) -> None:
    for _ in range(2):
        register_version(store, task="t", base_model="m", artifact_path=None)
    set_stage(store, "t", "v1", "production")
    canary = set_stage(store, "t", "v2", "canary", traffic_percent=10)
    assert (canary.stage, canary.traffic_percent) == ("canary", 10)
    set_stage(store, "t", "v2", "production")
    stages = {v.name: (v.stage, v.traffic_percent) for v in list_versions(store, "t")}
    assert stages == {"v1": ("archived", 0.0), "v2": ("production", 100.0)}


def test_bad_stage_and_percent(store: Store) -> None:
    register_version(store, task="t", base_model="m", artifact_path=None)
    with pytest.raises(InputError, match="unknown stage 'live'"):
        set_stage(store, "t", "v1", "live")
    with pytest.raises(InputError, match="traffic percent"):
        set_stage(store, "t", "v1", "canary", traffic_percent=150)


def test_job_recorder_success_and_failure(store: Store) -> None:
    with JobRecorder(store, kind="train", task="t", config={"a": 1}) as job:
        for step in range(3):
            job.event("metric", {"step": step, "loss": 1.0 / (step + 1)})
        job.succeed({"ok": True})
    with pytest.raises(RuntimeError), JobRecorder(store, kind="train", task="t") as failing:
        failing.event("log", {"message": "about to fail"})
        raise RuntimeError("boom")
    with store.session() as session:
        done = session.get_one(Job, job.job_id)
        failed = session.get_one(Job, failing.job_id)
        assert (done.status, done.result) == ("succeeded", {"ok": True})
        assert [e.step for e in done.events] == [0, 1, 2]
        assert failed.status == "failed"
        assert failed.error == "RuntimeError: boom"
        assert len(failed.events) == 1
