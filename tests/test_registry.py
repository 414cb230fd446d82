"""Registry: version numbering per task, lookup, stages and the job recorder."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from tuneloop.errors import InputError
from tuneloop.registry import (
    STAGES,
    Stage,
    current,
    history,
    list_versions,
    merge_version,
    promote,
    register_version,
    resolve_version,
    rollback,
    set_stage,
)
from tuneloop.store import Job, JobEventKind, ModelVersion, Store
from tuneloop.store.jobs import JobRecorder, ProgressEvent


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()


def weights(folder: Path, name: str) -> str:
    """A version folder with a weights file, as training leaves it."""
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(b"weights")
    return str(path)


def add(store: Store, folder: Path, task: str = "t", n: int = 1) -> list[ModelVersion]:
    return [
        register_version(
            store, task=task, base_model="m", artifact_path=weights(folder, f"{task}{i}")
        )
        for i in range(n)
    ]


def test_versions_are_numbered_per_task(store: Store, tmp_path: Path) -> None:
    first = register_version(store, task="a", base_model="m", artifact_path=weights(tmp_path, "1"))
    second = register_version(
        store, task="a", base_model="m", artifact_path=weights(tmp_path, "2"), parent_id=first.id
    )
    other = register_version(store, task="b", base_model="m", artifact_path=weights(tmp_path, "3"))
    assert (first.name, second.name, other.name) == ("v1", "v2", "v1")
    assert second.parent_id == first.id
    assert [v.name for v in list_versions(store, "a")] == ["v1", "v2"]


def test_a_version_is_registered_only_with_its_weights(store: Store, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for missing in (None, str(tmp_path / "nowhere"), str(empty)):
        with pytest.raises(InputError, match="no model weights at"):
            register_version(store, task="t", base_model="m", artifact_path=missing)
    assert list_versions(store, "t") == []
    remote = register_version(
        store,
        task="t",
        base_model="m",
        artifact_path=None,
        backend="openai",
        remote_id="ft:gpt-4o-mini:x",
    )
    assert remote.name == "v1"
    with pytest.raises(InputError, match="remote model id"):
        register_version(store, task="t", base_model="m", artifact_path=None, backend="together")


def test_latest_never_resolves_to_a_version_without_weights(store: Store, tmp_path: Path) -> None:
    first, second = add(store, tmp_path, n=2)
    shutil.rmtree(second.artifact_path)  # its files were deleted after registration
    assert resolve_version(store, "t", "latest").id == first.id
    assert resolve_version(store, "t", "v2").id == second.id  # asked by number: still found
    shutil.rmtree(first.artifact_path)
    with pytest.raises(InputError, match="no version with weights"):
        resolve_version(store, "t", "latest")


def test_resolve_by_number_name_latest_and_stage(store: Store, tmp_path: Path) -> None:
    add(store, tmp_path, n=3)
    assert resolve_version(store, "t", "v2").version == 2
    assert resolve_version(store, "t", 3).version == 3
    assert resolve_version(store, "t", "latest").version == 3
    set_stage(store, "t", "v1", "production")
    assert resolve_version(store, "t", "production").version == 1
    with pytest.raises(InputError, match="known: v1, v2, v3"):
        resolve_version(store, "t", "v9")
    with pytest.raises(InputError, match="not a version"):
        resolve_version(store, "t", "vx")


def test_new_production_archives_the_previous(store: Store, tmp_path: Path) -> None:
    add(store, tmp_path, n=2)
    set_stage(store, "t", "v1", "production")
    canary = set_stage(store, "t", "v2", "canary", traffic_percent=10)
    assert (canary.stage, canary.traffic_percent) == ("canary", 10)
    set_stage(store, "t", "v2", "production")
    stages = {v.name: (v.stage, v.traffic_percent) for v in list_versions(store, "t")}
    assert stages == {"v1": ("archived", 0.0), "v2": ("production", 100.0)}


def test_bad_stage_and_percent(store: Store, tmp_path: Path) -> None:
    add(store, tmp_path)
    with pytest.raises(InputError, match="unknown stage 'live'"):
        set_stage(store, "t", "v1", "live")
    with pytest.raises(InputError, match="canary share"):
        set_stage(store, "t", "v1", "canary", traffic_percent=150)
    with pytest.raises(InputError, match="needs its share"):
        promote(store, "t", "v1", to="canary")
    with pytest.raises(InputError, match="canary only"):
        promote(store, "t", "v1", to="shadow", share=5)


def test_promote_walks_the_ladder_and_history_audits_it(store: Store, tmp_path: Path) -> None:
    add(store, tmp_path, n=2)
    assert Stage.CANDIDATE == "candidate" and STAGES[-1] == "archived"
    assert promote(store, "t", "v1", actor="ana", reason="first").stage == Stage.SHADOW
    assert promote(store, "t", "v1", share=5, actor="ana", to="canary").traffic_percent == 5
    assert promote(store, "t", "v1", to="canary", share=20, actor="ana").traffic_percent == 20
    production = promote(store, "t", "v1", actor="ana", reason="gate passed", eval_run_id=None)
    assert (production.stage, production.traffic_percent) == ("production", 100.0)
    assert current(store, "t").id == production.id
    with pytest.raises(InputError, match="is production; name the stage with --to"):
        promote(store, "t", "v1")
    with pytest.raises(InputError, match="already production"):
        promote(store, "t", "v1", to="production")
    promote(store, "t", "v2", to="production", actor="bo", reason="better")
    entries = history(store, "t")
    assert [(e.version, e.from_stage, e.to_stage) for e in entries] == [
        ("v1", "candidate", "shadow"),
        ("v1", "shadow", "canary"),
        ("v1", "canary", "canary"),
        ("v1", "canary", "production"),
        ("v1", "production", "archived"),
        ("v2", "candidate", "production"),
    ]
    assert entries[0].actor == "ana" and entries[0].reason == "first"
    assert entries[4].reason == "replaced by v2: better" and entries[4].actor == "bo"
    assert entries[2].traffic_percent == 20


def test_rollback_restores_the_previous_production(store: Store, tmp_path: Path) -> None:
    add(store, tmp_path, n=3)
    with pytest.raises(InputError, match="no earlier production version"):
        rollback(store, "t")
    promote(store, "t", "v1", to="production")
    with pytest.raises(InputError, match="no earlier production version"):
        rollback(store, "t")
    promote(store, "t", "v2", to="production")
    promote(store, "t", "v3", to="production")
    back = rollback(store, "t", actor="oncall", reason="p95 doubled")
    assert back.name == "v2" and current(store, "t").name == "v2"
    stages = {v.name: v.stage for v in list_versions(store, "t")}
    assert stages == {"v1": "archived", "v2": "production", "v3": "archived"}
    last = history(store, "t")[-1]
    assert (last.version, last.to_stage, last.actor, last.reason) == (
        "v2",
        "production",
        "oncall",
        "p95 doubled",
    )
    assert rollback(store, "t").name == "v3"  # a second rollback undoes the first


def test_the_database_refuses_two_production_versions(store: Store, tmp_path: Path) -> None:
    _first, second = add(store, tmp_path, n=2)
    promote(store, "t", "v1", to="production")
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            update(ModelVersion).where(ModelVersion.id == second.id).values(stage="production")
        )


def _promote_in_process(url: str, version: str, barrier: Any) -> str:
    """Run in a separate process: connect, wait until every process is ready, promote."""
    store = Store(url, migrate=False)
    list_versions(store, "t")  # connected and warmed up before the race starts
    barrier.wait()
    try:
        return promote(store, "t", version, to="production", actor=f"p{version}").name
    finally:
        store.close()


@pytest.mark.slow
def test_concurrent_promotions_leave_one_production_version(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    versions = add(store, tmp_path, n=4)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barrier = manager.Barrier(4)
        promoted = pool.starmap(
            _promote_in_process, [(store_url, v.name, barrier) for v in versions]
        )
    assert sorted(promoted) == ["v1", "v2", "v3", "v4"]  # each succeeded, one after another
    stages = [v.stage for v in list_versions(store, "t")]
    assert stages.count("production") == 1 and stages.count("archived") == 3
    entries = history(store, "t")
    assert sum(e.to_stage == "production" for e in entries) == 4
    assert sum(e.to_stage == "archived" for e in entries) == 3
    winner = current(store, "t")
    assert winner is not None and entries[-1].version == winner.name


def test_merge_copies_a_full_model_and_refuses_a_used_folder(store: Store, tmp_path: Path) -> None:
    (version,) = add(store, tmp_path)
    Path(version.artifact_path, "config.json").write_text("{}")
    merged = merge_version(store, "t", "v1", tmp_path / "out")
    assert (merged / "model.safetensors").read_bytes() == b"weights"
    assert (merged / "config.json").is_file()
    with pytest.raises(InputError, match="not empty"):
        merge_version(store, "t", "v1", tmp_path / "out")
    assert not list(tmp_path.glob(".merge-*"))


def test_job_recorder_success_and_failure(store: Store) -> None:
    with JobRecorder(store, kind="train", task="t", config={"a": 1}) as job:
        for step in range(3):
            job.event(ProgressEvent(JobEventKind.METRIC, {"step": step, "loss": 1.0 / (step + 1)}))
        job.succeed({"ok": True})
    with pytest.raises(RuntimeError), JobRecorder(store, kind="train", task="t") as failing:
        failing.event(ProgressEvent(JobEventKind.LOG, {"message": "about to fail"}))
        raise RuntimeError("boom")
    with store.session() as session:
        done = session.get_one(Job, job.job_id)
        failed = session.get_one(Job, failing.job_id)
        assert (done.status, done.result) == ("succeeded", {"ok": True})
        assert [e.step for e in done.events] == [0, 1, 2]
        assert failed.status == "failed"
        assert failed.error == "RuntimeError: boom"
        assert len(failed.events) == 1


@pytest.mark.slow
def test_merge_writes_a_model_that_answers_like_base_plus_adapter(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneloop.assets import resolve_model_path

    base_path = resolve_model_path("builtin:tiny")
    torch.manual_seed(0)
    adapted = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_path),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    adapter_dir = tmp_path / "adapter"
    adapted.save_pretrained(adapter_dir)
    store = Store(f"sqlite:///{(tmp_path / 'store.db').as_posix()}")
    register_version(store, task="t", base_model="builtin:tiny", artifact_path=str(adapter_dir))
    merged_dir = merge_version(store, "t", "v1")
    assert merged_dir == (tmp_path / "merged").resolve()
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path), str(adapter_dir)
    ).eval()
    plain = AutoModelForCausalLM.from_pretrained(base_path).eval()
    tokens = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        want, got, base = (m(tokens).logits for m in (reference, merged, plain))
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, base, atol=1e-3)  # the adapter changed something


def test_cli_promote_rollback_history(store: Store, store_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tuneloop.cli.app import app

    add(store, tmp_path, n=2)
    config = tmp_path / "tuneloop.toml"
    config.write_text(
        f'workspace = "{tmp_path.as_posix()}/ws"\ntask = "t"\n[store]\nurl = "{store_url}"\n'
    )
    runner = CliRunner()
    option = ["--config", str(config)]
    shadow = runner.invoke(app, ["models", "promote", "t@v1", *option])
    assert shadow.exit_code == 0 and "t@v1 is now shadow" in shadow.output
    canary = runner.invoke(app, ["models", "promote", "t@v1", "--share", "10", *option])
    assert canary.exit_code == 0 and "canary at 10%" in canary.output
    for version in ("v1", "v2"):
        done = runner.invoke(
            app,
            [
                "models",
                "promote",
                f"t@{version}",
                "--to",
                "production",
                "--reason",
                "gate passed",
                *option,
            ],
        )
        assert done.exit_code == 0, done.output
    back = runner.invoke(app, ["models", "rollback", "t", "--reason", "errors up", *option])
    assert back.exit_code == 0 and "t@v1 is production again" in back.output
    assert "t@v1" in runner.invoke(app, ["models", "current", *option]).output
    audit = runner.invoke(app, ["models", "history", "t", "--json", *option])
    lines = [json.loads(line) for line in audit.output.splitlines()]
    assert [(e["version"], e["to_stage"]) for e in lines][-2:] == [
        ("v2", "archived"),
        ("v1", "production"),
    ]
    assert lines[-1]["reason"] == "errors up" and lines[-1]["actor"]
