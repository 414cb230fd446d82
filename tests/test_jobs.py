"""Jobs survive signals: SIGTERM and SIGINT leave a status and a reason, a dead process shows as
stale, ``tuneloop jobs cancel`` stops a running job at its next step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import tuneloop
from tuneloop.cli.app import app
from tuneloop.errors import Interrupted
from tuneloop.store import Job, JobEvent, JobStatus, ModelVersion, Store
from tuneloop.store.jobs import JobRecorder, effective_status

SRC = str(Path(tuneloop.__file__).resolve().parents[1])
WORKER = """
import sys, time
from tuneloop.store import JobEventKind, ProgressEvent, Store
from tuneloop.store.jobs import JobRecorder

store = Store(sys.argv[1])
with JobRecorder(store, kind="train", task="t", heartbeat_s=0.05) as job:
    print(job.job_id, flush=True)
    for step in range(100_000):
        job.event(ProgressEvent(JobEventKind.METRIC, {"step": step, "loss": 1.0}))
        time.sleep(0.01)
"""


def _start(store_url: str) -> tuple[subprocess.Popen[str], int]:
    Store(store_url).close()
    env = {**os.environ, "PYTHONPATH": SRC}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, store_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert line.strip().isdigit(), worker.stderr.read() if worker.stderr else line
    time.sleep(0.3)  # a few steps in
    return worker, int(line)


def _job(store_url: str, job_id: int) -> tuple[Job, int]:
    store = Store(store_url)
    with store.session() as session:
        job = session.get_one(Job, job_id)
        events = len(session.scalars(select(JobEvent.id).where(JobEvent.job_id == job_id)).all())
    store.close()
    return job, events


@pytest.mark.parametrize(
    ("signal_number", "status", "reason"),
    [
        (signal.SIGTERM, JobStatus.INTERRUPTED, "stopped by SIGTERM"),
        (signal.SIGINT, JobStatus.CANCELLED, "stopped by SIGINT"),
    ],
)
def test_a_signal_leaves_a_status_and_a_reason(
    store_url: str, signal_number: int, status: JobStatus, reason: str
) -> None:
    worker, job_id = _start(store_url)
    worker.send_signal(signal_number)
    worker.communicate(timeout=30)
    assert worker.returncode != 0
    job, events = _job(store_url, job_id)
    assert (job.status, job.error) == (status, f"job {job_id} {reason}")
    assert job.finished_at is not None and events > 0  # buffered events were written


def test_jobs_cancel_stops_a_running_job_at_its_next_step(store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "tuneloop.toml"
    config.write_text(f'[store]\nurl = "{store_url}"\n', encoding="utf-8")
    worker, job_id = _start(store_url)
    result = CliRunner().invoke(app, ["jobs", "cancel", str(job_id), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "stops at its next step" in result.output
    worker.communicate(timeout=30)
    job, _ = _job(store_url, job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.error == f"job {job_id} cancelled (tuneloop jobs cancel)"
    again = CliRunner().invoke(app, ["jobs", "cancel", str(job_id), "-c", str(config)])
    assert "already ended (cancelled)" in str(again.exception)


def test_a_job_whose_process_died_is_stale_and_can_be_cleared(
    store_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "tuneloop.toml"
    config.write_text(f'[store]\nurl = "{store_url}"\n', encoding="utf-8")
    worker, job_id = _start(store_url)
    worker.kill()  # SIGKILL: no handler runs, nothing is written
    worker.communicate(timeout=30)
    job, _ = _job(store_url, job_id)
    assert job.status == JobStatus.RUNNING  # as the dead process left it
    assert effective_status(job) == JobStatus.STALE  # its pid is gone on this machine
    runner = CliRunner()
    listed = runner.invoke(app, ["jobs", "list", "--status", "stale", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "stale" in listed.output and "no heartbeat" in listed.output
    shown = runner.invoke(app, ["jobs", "show", str(job_id), "-c", str(config)])
    assert shown.exit_code == 0 and "stale" in shown.output
    cleared = runner.invoke(app, ["jobs", "cancel", str(job_id), "-c", str(config)])
    assert cleared.exit_code == 0 and "is now stale" in cleared.output
    job, _ = _job(store_url, job_id)
    assert job.status == JobStatus.STALE and "without a word" in (job.error or "")


def test_an_old_heartbeat_is_stale_even_elsewhere(store_url: str) -> None:
    store = Store(store_url)
    recorder = JobRecorder(store, kind="evaluate", task="t")
    with store.session() as session:
        job = session.get_one(Job, recorder.job_id)
        job.host = "another-machine"
    assert effective_status(job) == JobStatus.QUEUED
    assert effective_status(job, stale_after_s=-1) == JobStatus.STALE
    store.close()


def test_a_stop_after_registering_keeps_the_whole_version(store_url: str) -> None:
    store = Store(store_url)
    with pytest.raises(Interrupted), JobRecorder(store, kind="train", task="t") as late:
        with store.session() as session:
            session.add(
                ModelVersion(
                    task="t",
                    version=1,
                    base_model="b",
                    job_id=late.job_id,
                    artifact_path="/models/t/job-1/adapter",
                )
            )
        raise Interrupted("stopped by SIGTERM", signal_number=signal.SIGTERM)
    with pytest.raises(Interrupted), JobRecorder(store, kind="train", task="t") as early:
        raise Interrupted("stopped by SIGTERM", signal_number=signal.SIGTERM)
    with store.session() as session:
        done = session.get_one(Job, late.job_id)
        stopped = session.get_one(Job, early.job_id)
        versions = session.scalars(select(ModelVersion.job_id)).all()
    assert done.status == JobStatus.SUCCEEDED and done.result["model_version"] == "v1"
    assert stopped.status == JobStatus.INTERRUPTED and versions == [late.job_id]
    store.close()


def test_jobs_list_shows_every_kind(store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "tuneloop.toml"
    config.write_text(f'[store]\nurl = "{store_url}"\n', encoding="utf-8")
    store = Store(store_url)
    with JobRecorder(store, kind="train", task="t") as job:
        job.succeed({"model_version": "v1"})
    with pytest.raises(RuntimeError), JobRecorder(store, kind="evaluate", task="t"):
        raise RuntimeError("provider down")
    store.close()
    runner = CliRunner()
    result = runner.invoke(app, ["jobs", "list", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "evaluate" in result.output
    listed = runner.invoke(app, ["jobs", "list", "--json", "-c", str(config)])
    rows = [(row["kind"], row["status"], row["error"]) for row in json.loads(listed.stdout)]
    assert rows == [
        ("evaluate", "failed", "RuntimeError: provider down"),
        ("train", "succeeded", None),
    ]
    only = runner.invoke(app, ["jobs", "list", "--kind", "evaluate", "--json", "-c", str(config)])
    assert [row["kind"] for row in json.loads(only.stdout)] == ["evaluate"]
    bad = runner.invoke(app, ["jobs", "list", "--status", "done", "-c", str(config)])
    assert "not a job status" in str(bad.exception)


@pytest.mark.slow
def test_sigterm_during_training_registers_nothing(tmp_path: Path) -> None:
    """`docker stop` during `tuneloop train`: one line, exit 143, job interrupted, no version."""
    from tuneloop.assets import BUILTIN_MODELS
    from tuneloop.capture.client import Tuneloop
    from tuneloop.config import load_config
    from tuneloop.curate.build import build_dataset
    from tuneloop.demo.layouts import SYSTEM_PROMPT
    from tuneloop.demo.simulate import layout_validator, synth_items
    from tuneloop.demo.teacher import Teacher
    from tuneloop.providers import CallableProvider
    from tuneloop.synth import generate_examples

    if not (BUILTIN_MODELS["builtin:tiny"] / "model.safetensors").exists():
        pytest.skip("base model not built (make base-model)")
    config_file = tmp_path / "tuneloop.toml"
    config_file.write_text(
        'workspace = "ws"\ntask = "ui"\n[train]\nepochs = 50\nbatch_size = 2\nmax_length = 320\n',
        encoding="utf-8",
    )
    config = load_config(config_file)
    with Tuneloop(config) as tl:
        teacher = CallableProvider(Teacher(seed=3, flaw_rate=0.0), name="teacher")
        generate_examples(
            tl,
            teacher,
            synth_items(12, seed=1),
            task="ui",
            system_prompt=SYSTEM_PROMPT,
            validator=layout_validator,
        )
        build_dataset(tl.store, config, task="ui")
    env = {**os.environ, "PYTHONPATH": SRC}
    trainer = subprocess.Popen(
        [sys.executable, "-m", "tuneloop.cli.app", "train", "-c", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    store = Store(config.store_url)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and trainer.poll() is None:
        with store.session() as session:
            if session.scalar(select(JobEvent.id).where(JobEvent.kind == "metric").limit(1)):
                break
        time.sleep(0.2)
    assert trainer.poll() is None, trainer.communicate()
    trainer.send_signal(signal.SIGTERM)
    _, stderr = trainer.communicate(timeout=120)
    assert trainer.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    with store.session() as session:
        job = session.scalars(select(Job)).one()
        assert (job.status, job.error) == (
            JobStatus.INTERRUPTED,
            f"job {job.id} stopped by SIGTERM",
        )
        assert session.scalars(select(ModelVersion)).all() == []
    store.close()
