"""Hosted fine-tuning (OpenAI, Together) against the fake servers on loopback: submit, poll,
re-attach, register once, cancel, failures and user errors. Nothing here reaches the internet."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeAPI
from sqlalchemy import select
from typer.testing import CliRunner

import tuneloop
from tuneloop.capture.client import Tuneloop
from tuneloop.cli.app import app
from tuneloop.config import Config
from tuneloop.curate.build import build_dataset
from tuneloop.demo.layouts import SYSTEM_PROMPT
from tuneloop.demo.simulate import layout_validator, synth_items
from tuneloop.demo.teacher import Teacher
from tuneloop.errors import InputError, TrainingError
from tuneloop.providers import CallableProvider, provider_for_version
from tuneloop.registry import list_versions
from tuneloop.store import (
    Dataset,
    Job,
    JobEvent,
    JobEventKind,
    JobStatus,
    ProgressEvent,
    Store,
    can_move,
    create_job,
    get_job,
    update_job,
)
from tuneloop.synth import generate_examples
from tuneloop.train import cancel, submit, watch
from tuneloop.train.hosted.openai import OpenAIBackend
from tuneloop.train.hosted.together import TogetherBackend

SRC = str(Path(tuneloop.__file__).resolve().parents[1])
KEYS = {"OPENAI_API_KEY": "sk-fake", "TOGETHER_API_KEY": "tg-fake"}


def _said(result: Any) -> str:
    """What a command printed, and the message of a user error (main() prints it)."""
    return result.output + str(result.exception or "")


def no_wait(_seconds: float) -> None:
    return None


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


def _config(
    tmp_path: Path, backend: str, api: FakeAPI, store_url: str | None = None, **section: Any
) -> Config:
    hosted = {"base_url": api.base_url, "poll_s": 0, **section}
    return Config.model_validate(
        {
            "workspace": str(tmp_path / "ws"),
            "task": "ui",
            "store": {"url": store_url},
            "train": {"backend": backend, backend: hosted},
        }
    )


def _dataset(config: Config) -> tuple[Store, Dataset]:
    tl = Tuneloop(config)
    teacher = CallableProvider(Teacher(seed=3, flaw_rate=0.0), name="teacher")
    generate_examples(
        tl,
        teacher,
        synth_items(12, seed=1),
        task="ui",
        system_prompt=SYSTEM_PROMPT,
        validator=layout_validator,
    )
    return tl.store, build_dataset(tl.store, config, task="ui")


def _write_config(config: Config, path: Path) -> Path:
    train = config.train
    section = getattr(train, train.backend)
    lines = [
        f'workspace = "{config.workspace.as_posix()}"',
        'task = "ui"',
        "[train]",
        f'backend = "{train.backend}"',
        f"[train.{train.backend}]",
        f'base_url = "{section.base_url}"',
        "poll_s = 0",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the state machine ---------------------------------------------------------------------------


def test_the_job_state_machine_refuses_a_finished_job_starting_again(tmp_path: Path) -> None:
    assert can_move(JobStatus.QUEUED, JobStatus.RUNNING)
    assert can_move(JobStatus.QUEUED, JobStatus.SUCCEEDED)  # a job that ended between polls
    assert can_move(JobStatus.INTERRUPTED, JobStatus.RUNNING)  # resumed
    assert not can_move(JobStatus.SUCCEEDED, JobStatus.RUNNING)
    assert not can_move(JobStatus.CANCELLED, JobStatus.SUCCEEDED)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job_id = create_job(store, kind="train", task="t", backend="openai")
    event = ProgressEvent(JobEventKind.LOG, {"message": "hi", "provider_event_id": "e1"})
    update_job(store, job_id, status=JobStatus.RUNNING, provider_status="running", events=[event])
    update_job(store, job_id, events=[event, event])  # the same provider event polled again
    update_job(store, job_id, status=JobStatus.FAILED, error="boom")
    with pytest.raises(InputError, match="is failed; it cannot become running"):
        update_job(store, job_id, status=JobStatus.RUNNING)
    job, state, events = get_job(store, job_id)
    assert (state, job.result["provider_status"], len(events)) == (JobStatus.FAILED, "running", 1)
    store.close()


def test_a_poll_that_read_the_provider_late_does_not_move_the_job_back(tmp_path: Path) -> None:
    """Two watchers: one saw "queued" before the other recorded "running"; the row stays."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job_id = create_job(store, kind="train", task="t", backend="openai")
    update_job(store, job_id, status=JobStatus.RUNNING, provider_status="running")
    update_job(store, job_id, status=JobStatus.QUEUED, provider_status="queued", behind_ok=True)
    job, state, _ = get_job(store, job_id)
    assert (state, job.result["provider_status"]) == (JobStatus.RUNNING, "running")
    with pytest.raises(InputError, match="is running; it cannot become queued"):
        update_job(store, job_id, status=JobStatus.QUEUED)  # without behind_ok it is refused
    store.close()


# -- OpenAI --------------------------------------------------------------------------------------


def test_openai_job_goes_queued_running_succeeded_and_serves(
    tmp_path: Path, fake_openai: FakeAPI, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tuneloop.train.hosted.openai.EVENT_PAGE", 2)  # events span pages
    config = _config(tmp_path, "openai", fake_openai, suffix="ui-v1")
    store, dataset = _dataset(config)
    job_id = submit(store, config, dataset)
    job, state, _ = get_job(store, job_id)
    remote = job.config["remote"]
    assert (state, job.result["provider_status"]) == (JobStatus.QUEUED, "validating_files")
    assert remote["id"].startswith("ftjob-") and remote["files"]["validation"]
    # epochs "auto": OpenAI's rule, kept as an estimate beside the request as sent
    assert remote["request"]["estimated_n_epochs"] >= 3
    assert remote["request"]["method"] == {"type": "supervised"}
    uploaded = fake_openai.tuning.files[remote["files"]["train"]]["content"].decode()
    assert all("messages" in json.loads(line) for line in uploaded.splitlines())

    seen: list[ProgressEvent] = []
    watched = watch(store, config, job_id, progress=seen.append, sleep=no_wait)
    assert watched.status == JobStatus.SUCCEEDED and watched.version is not None
    version = watched.version
    assert (version.backend, version.name, version.dataset_id) == ("openai", "v1", dataset.id)
    assert version.remote_id and version.remote_id.startswith("ft:gpt-4o-mini-2024-07-18:")
    messages = [event.data["message"] for event in seen]
    assert len(messages) == len(set(messages)) == 6  # every event once, oldest first
    assert messages[0].startswith("Validating") and "successfully" in messages[-1]
    metrics = [event for event in seen if event.kind == JobEventKind.METRIC]
    assert [event.step for event in metrics] == [1, 2] and "loss" in metrics[0].data
    assert any("successfully completed" in event.data["message"] for event in seen)
    job, state, _ = get_job(store, job_id)
    assert (state, job.result["model_version"], job.result["trained_tokens"]) == (
        JobStatus.SUCCEEDED,
        "v1",
        1234,
    )
    assert job.result["checkpoints"][0]["valid_loss"] == 0.6
    assert version.metrics["training"]["train_loss"] == 0.5

    fake_openai.default.text = "served by the fine-tuned model"
    answer = provider_for_version(version).complete([{"role": "user", "content": "hi"}])
    assert answer.text == "served by the fine-tuned model"
    assert fake_openai.requests[-1].body["model"] == version.remote_id
    store.close()


@pytest.mark.slow
def test_watch_in_another_process_reattaches_and_registers_once(
    tmp_path: Path, fake_openai: FakeAPI, keys: None
) -> None:
    config = _config(tmp_path, "openai", fake_openai)
    store, dataset = _dataset(config)
    job_id = submit(store, config, dataset)
    config_file = _write_config(config, tmp_path / "tuneloop.toml")
    env = {**os.environ, **KEYS, "PYTHONPATH": SRC}
    command = [sys.executable, "-m", "tuneloop.cli.app", "train", "watch", str(job_id)]
    watchers = [
        subprocess.Popen(
            [*command, "--config", str(config_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [watcher.communicate(timeout=120)[0] for watcher in watchers]
    assert [watcher.returncode for watcher in watchers] == [0, 0], outputs
    assert all(f"ui@v1 from job {job_id}" in output for output in outputs), outputs
    again = watch(store, config, job_id, sleep=no_wait)  # a third look: nothing new to do
    assert again.version is not None and again.version.name == "v1"
    assert [v.name for v in list_versions(store, "ui")] == ["v1"]
    with store.session() as session:
        ids = [
            data["provider_event_id"]
            for data in session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id))
            if "provider_event_id" in data
        ]
    assert ids and len(ids) == len(set(ids))  # each provider event stored once
    store.close()


def test_two_watchers_at_once_register_one_version(
    tmp_path: Path, store_url: str, fake_openai: FakeAPI, keys: None
) -> None:
    config = _config(tmp_path, "openai", fake_openai, store_url)
    store, dataset = _dataset(config)
    job_id = submit(store, config, dataset)
    results: list[Any] = []

    def run() -> None:
        own = Store(config.store_url)
        try:
            results.append(watch(own, config, job_id, sleep=no_wait).version)
        finally:
            own.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3 and {version.id for version in results} == {results[0].id}
    assert len(list_versions(store, "ui")) == 1
    store.close()


def test_a_failed_openai_job_says_why_in_one_line(
    tmp_path: Path, fake_openai: FakeAPI, keys: None
) -> None:
    fake_openai.tuning.fail_with = "Training file has 3 examples over the\ncontext length."
    config = _config(tmp_path, "openai", fake_openai)
    store, dataset = _dataset(config)
    job_id = submit(store, config, dataset)
    config_file = _write_config(config, tmp_path / "tuneloop.toml")
    result = CliRunner().invoke(app, ["train", "watch", str(job_id), "--config", str(config_file)])
    assert result.exit_code == 1
    job, state, _ = get_job(store, job_id)
    assert state == JobStatus.FAILED and job.result["provider_status"] == "failed"
    assert job.error == ("Training file has 3 examples over the context length. [training_failed]")
    assert job.error in " ".join(result.output.split())
    assert list_versions(store, "ui") == []
    store.close()


def test_openai_user_errors_are_one_line_and_upload_nothing_bad(
    tmp_path: Path, fake_openai: FakeAPI, keys: None
) -> None:
    config = _config(tmp_path, "openai", fake_openai)
    store, dataset = _dataset(config)
    backend = OpenAIBackend(config.train.openai)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": 3\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: example_missing_assistant_message"):
        backend.check_file(bad)
    with pytest.raises(TrainingError, match=r"upload of bad.jsonl failed \(400\): Invalid file"):
        backend.upload(bad)  # the server's own check, had ours been skipped
    with pytest.raises(TrainingError, match=r"\(404\): Could not find fine-tune: ftjob-nope"):
        backend.retrieve("ftjob-nope")
    with pytest.raises(InputError, match="no job 999 in the store"):
        watch(store, config, 999, sleep=no_wait)

    unknown = config.model_copy(deep=True)
    unknown.train.openai.model = "davinci-nope"
    with pytest.raises(TrainingError, match="davinci-nope is not available for fine-tuning"):
        submit(store, unknown, dataset)
    failed = store.session().__enter__().scalars(select(Job).order_by(Job.id.desc())).first()
    assert failed is not None and failed.status == JobStatus.FAILED
    assert "not available for fine-tuning" in (failed.error or "")

    dpo = config.model_copy(deep=True)
    dpo.train.openai.method = "dpo"
    with pytest.raises(InputError, match="has no preference pairs"):
        submit(store, dpo, dataset)

    config_file = _write_config(config, tmp_path / "tuneloop.toml")
    refused = CliRunner().invoke(
        app, ["train", "start", "--openai-n-epochs", "0", "--config", str(config_file)]
    )
    assert refused.exit_code != 0 and "train.openai.n_epochs" in _said(refused)
    store.close()


def test_jobs_cancel_cancels_a_hosted_job_at_its_provider(
    tmp_path: Path, fake_openai: FakeAPI, keys: None
) -> None:
    config = _config(tmp_path, "openai", fake_openai)
    store, _dataset_row = _dataset(config)
    config_file = _write_config(config, tmp_path / "tuneloop.toml")
    runner = CliRunner()
    started = runner.invoke(app, ["train", "start", "--config", str(config_file)])
    assert started.exit_code == 0, started.output
    job_id = int(re.search(r"submitted job (\d+)", started.output)[1])  # type: ignore[index]
    listed = runner.invoke(app, ["jobs", "list", "--json", "--config", str(config_file)])
    row = json.loads(listed.output)[0]
    assert (row["id"], row["backend"], row["status"]) == (job_id, "openai", "queued")
    cancelled = runner.invoke(app, ["jobs", "cancel", str(job_id), "--config", str(config_file)])
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output
    assert fake_openai.tuning.calls_to("POST", "/cancel") == 1
    job, state, _ = get_job(store, job_id)
    assert state == JobStatus.CANCELLED and job.result["provider_status"] == "cancelled"
    assert watch(store, config, job_id, sleep=no_wait).status == JobStatus.CANCELLED
    again = runner.invoke(app, ["jobs", "cancel", str(job_id), "--config", str(config_file)])
    assert again.exit_code != 0 and "already ended" in _said(again)
    assert list_versions(store, "ui") == []
    store.close()


def test_plain_train_with_a_hosted_backend_submits_and_watches(
    tmp_path: Path, fake_openai: FakeAPI, keys: None
) -> None:
    config = _config(tmp_path, "openai", fake_openai)
    store, _dataset_row = _dataset(config)
    config_file = _write_config(config, tmp_path / "tuneloop.toml")
    result = CliRunner().invoke(app, ["train", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "registered ui@v1" in result.output and "ft:gpt-4o-mini" in result.output
    store.close()


# -- Together ------------------------------------------------------------------------------------


def test_together_job_sends_lora_settings_registers_and_downloads_the_adapter(
    tmp_path: Path, fake_together: FakeAPI, keys: None
) -> None:
    config = _config(
        tmp_path,
        "together",
        fake_together,
        lora_r=16,
        lora_dropout=0.1,
        lora_trainable_modules="q_proj,v_proj",
        n_epochs=2,
        n_checkpoints=2,
        n_evals=1,
        batch_size=8,
        download_adapter=True,
    )
    store, dataset = _dataset(config)
    job_id = submit(store, config, dataset)
    job, state, _ = get_job(store, job_id)
    assert (state, job.result["provider_status"]) == (JobStatus.QUEUED, "pending")
    sent = fake_together.tuning.jobs[job.config["remote"]["id"]].request
    assert sent["training_type"] == {
        "type": "Lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.1,
        "lora_trainable_modules": "q_proj,v_proj",
    }
    assert sent["training_method"] == {"method": "sft", "train_on_inputs": "auto"}
    assert (sent["n_epochs"], sent["n_checkpoints"], sent["n_evals"]) == (2, 2, 1)
    assert sent["validation_file"] and sent["batch_size"] == 8
    assert fake_together.tuning.calls_to("PUT", "/_storage/") == 2  # train + validation

    watched = watch(store, config, job_id, sleep=no_wait)
    assert watched.status == JobStatus.SUCCEEDED and watched.version is not None
    version = watched.version
    assert version.backend == "together" and version.remote_id
    assert version.remote_id.startswith("fake-org/Meta-Llama-3.1-8B-Instruct-Reference-")
    adapter = Path(version.artifact_path or "")
    assert (adapter / "adapter_config.json").is_file()
    assert adapter.parent.name == f"job-{job_id}"
    job, _state, _ = get_job(store, job_id)
    assert job.result["token_count"] == 4321

    fake_together.default.text = "served by together"
    answer = provider_for_version(version).complete([{"role": "user", "content": "hi"}])
    assert answer.text == "served by together"
    store.close()


def test_together_failure_cancel_and_settings_errors(
    tmp_path: Path, fake_together: FakeAPI, keys: None
) -> None:
    config = _config(tmp_path, "together", fake_together)
    store, dataset = _dataset(config)

    fake_together.tuning.fail_with = "Out of memory at step 3: reduce batch_size"
    failed = watch(store, config, submit(store, config, dataset), sleep=no_wait)
    assert failed.status == JobStatus.FAILED
    assert failed.error == "Out of memory at step 3: reduce batch_size"
    fake_together.tuning.fail_with = None

    job_id = submit(store, config, dataset)
    status, provider_status = cancel(store, job_id)
    assert (status, provider_status) == (JobStatus.RUNNING, "cancel_requested")
    assert watch(store, config, job_id, sleep=no_wait).status == JobStatus.CANCELLED

    too_big = config.model_copy(deep=True)
    too_big.train.together.batch_size = 64
    with pytest.raises(InputError, match="batch size of 64 is higher .* maximum .* 32"):
        submit(store, too_big, dataset)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "assistant", "content": "x"}]}\n')
    with pytest.raises(InputError, match="bad.jsonl:1: together_first_role"):
        TogetherBackend(config.train.together).check_file(bad)
    assert list_versions(store, "ui") == []
    store.close()


def test_hosted_jobs_never_go_stale(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job_id = create_job(store, kind="train", task="t", backend="together")
    update_job(
        store, job_id, status=JobStatus.RUNNING, remote={"provider": "together", "id": "ft-1"}
    )
    with store.session() as session:
        job = session.get_one(Job, job_id)
        job.pid, job.heartbeat_at = 2**22 + 12345, job.created_at.replace(year=2000)
    assert get_job(store, job_id)[1] == JobStatus.RUNNING
    store.close()


def test_watch_follows_a_local_job_through_its_stored_events(tmp_path: Path) -> None:
    from tuneloop.store import JobRecorder

    config = Config(workspace=tmp_path / "ws")
    store = Store(config.store_url)
    with JobRecorder(store, kind="train", task="t") as job:
        for step in (1, 2):
            job.event(ProgressEvent(JobEventKind.METRIC, {"step": step, "loss": 1.0 / step}))
    seen: list[ProgressEvent] = []
    watched = watch(store, config, job.job_id, progress=seen.append, sleep=no_wait)
    assert watched.status == JobStatus.SUCCEEDED and watched.version is None
    assert [event.step for event in seen] == [1, 2]
    with pytest.raises(InputError, match="is a local job"):
        from tuneloop.train import poll

        poll(store, config, job.job_id)
    store.close()


def test_openai_dpo_job_sends_the_dpo_method_and_its_hyperparameters(
    tmp_path: Path, fake_openai: FakeAPI, keys: None
) -> None:
    config = _config(tmp_path, "openai", fake_openai, method="dpo", beta=0.2, n_epochs=2)
    backend = OpenAIBackend(config.train.openai)
    pairs = tmp_path / "pairs.jsonl"
    pair = {
        "input": {"messages": [{"role": "user", "content": "Make a login screen"}]},
        "preferred_output": [{"role": "assistant", "content": '{"screen": "login"}'}],
        "non_preferred_output": [{"role": "assistant", "content": '{"screen": "home"}'}],
    }
    pairs.write_text(json.dumps(pair) + "\n")
    backend.check_file(pairs)
    job, sent = backend.create(backend.upload(pairs), None, train_examples=1)
    assert (job.status, job.provider_status) == (JobStatus.QUEUED, "validating_files")
    assert sent["method"] == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"n_epochs": 2, "beta": 0.2}},
    }
    assert fake_openai.tuning.jobs[job.id].request["method"] == sent["method"]
    assert "estimated_n_epochs" not in sent  # epochs were given


def test_a_job_cancelled_while_it_is_submitted_is_cancelled_at_its_provider(
    tmp_path: Path, fake_openai: FakeAPI, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneloop.store import cancel_job, list_jobs

    config = _config(tmp_path, "openai", fake_openai)
    store, dataset = _dataset(config)
    backend = OpenAIBackend(config.train.openai)
    create = backend.create

    def cancelled_first(*args: Any, **kwargs: Any) -> Any:
        cancel_job(store, list_jobs(store, limit=1)[0][0].id)  # `jobs cancel` meanwhile
        return create(*args, **kwargs)

    monkeypatch.setattr(backend, "create", cancelled_first)
    with pytest.raises(TrainingError, match="cancelled while it was submitted"):
        submit(store, config, dataset, backend=backend)
    assert fake_openai.tuning.calls_to("POST", "/cancel") == 1
    job, state, _ = get_job(store, list_jobs(store, limit=1)[0][0].id)
    assert state == JobStatus.CANCELLED and job.result["provider_status"] == "cancelled"
    store.close()
