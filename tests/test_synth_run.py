"""Pipelines run against the fake OpenAI/Together servers: output, cache, faults, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_server import FakeAPI, Reply
from sqlalchemy import select

from tuneloop.config import Config
from tuneloop.jsontext import dumps_canonical
from tuneloop.store import Interaction, Store
from tuneloop.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "Check the tracking page first; parcels usually arrive within two working days."

TWO_STEPS = """
name = "support"
task = "support"
concurrency = {concurrency}
vars = {{ topic = ["billing", "shipping", "returns"] }}

[[steps]]
name = "idea"
provider = "callable:synth_helpers:idea"
prompt = "Customer number {{{{ index }}}} asks a question about {{{{ topic }}}}"

[[steps]]
name = "answer"
provider = {provider}
system = "You are a support agent."
prompt = "Reply to this: {{{{ idea }}}}"
gates = {{ min_words = 3{extra_gates} }}
"""


def pipeline_file(
    tmp_path: Path,
    provider: str = '"openai:gpt-4o-mini"',
    concurrency: int = 4,
    extra_gates: str = "",
) -> Path:
    path = tmp_path / "support.toml"
    text = TWO_STEPS.format(provider=provider, concurrency=concurrency, extra_gates=extra_gates)
    path.write_text(text, encoding="utf-8")
    return path


def sent(api: FakeAPI) -> list[str]:
    """Each request the fake received, as canonical text (so repeats compare equal)."""
    return [dumps_canonical(request.body) for request in api.requests]


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeAPI, fake_together: FakeAPI) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("TOGETHER_BASE_URL", fake_together.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-test")
    fake_openai.default = Reply(text=ANSWER)
    fake_together.default = Reply(text="Together: " + ANSWER)


@pytest.mark.usefixtures("keys")
def test_a_run_stores_examples_writes_three_files_and_pays_once(
    tmp_path: Path, config_factory: Any, fake_openai: FakeAPI
) -> None:
    config: Config = config_factory()
    summary = synthesize(config, pipeline_file(tmp_path), n=6)

    assert summary["examples"] == 6 and summary["failed"] == 0
    assert summary["steps"]["answer"] == {
        "calls": 6,
        "cached": 0,
        "kept": 6,
        "rejected": 0,
        "failed": 0,
        "resent": 0,
    }
    assert summary["resent_after_crash"] == 0
    assert len(fake_openai.requests) == 6
    keys = {request.headers["idempotency-key"] for request in fake_openai.requests}
    assert len(keys) == 6  # each call under its own key, recorded before it was sent
    seeds = {request.body["seed"] for request in fake_openai.requests}
    assert len(seeds) == 6  # a deterministic, distinct seed per output
    spend = summary["providers"]["openai:gpt-4o-mini"]
    assert spend["calls"] == 6 and spend["prompt_tokens"] == 6 * 12
    assert spend["cost_usd"] > 0

    files = {key: Path(path) for key, path in summary["files"].items()}
    lines = files["examples"].read_text().splitlines()
    assert len(lines) == 6
    first = json.loads(lines[0])["messages"]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[-1]["content"] == ANSWER
    detailed = json.loads(files["detailed"].read_text())
    assert detailed[0]["metadata"]["pipeline"] == "support"
    assert detailed[0]["metadata"]["step"] == "answer"
    assert detailed[0]["metadata"]["parent"] == detailed[0]["metadata"]["path"].rsplit(".", 1)[0]
    assert json.loads(files["run"].read_text())["status"] == "finished"

    store = Store(config.store_url)
    with store.session() as session:
        rows = session.scalars(select(Interaction).where(Interaction.task == "support")).all()
        assert len(rows) == 6
        assert {row.source for row in rows} == {"synthetic"}
        assert {row.provider for row in rows} == {"openai:gpt-4o-mini"}

    again = synthesize(config, pipeline_file(tmp_path), n=6)
    assert len(fake_openai.requests) == 6  # every answer came from the cache
    assert again["steps"]["answer"]["cached"] == 6 and again["providers"] == {}
    assert files["examples"].read_text().splitlines() == lines
    with store.session() as session:
        count = len(session.scalars(select(Interaction.id)).all())
    store.close()
    assert count == 6  # nothing stored twice


@pytest.mark.usefixtures("keys")
def test_a_failing_first_provider_falls_back_and_the_run_completes(
    tmp_path: Path, fake_openai: FakeAPI, fake_together: FakeAPI
) -> None:
    config = Config.model_validate(
        {
            "workspace": str(tmp_path / "ws"),
            "providers": {"primary": {"kind": "openai", "model": "gpt-4o-mini", "max_retries": 0}},
        }
    )
    failures = [Reply.error(429, "slow down", retry_after=0)] * 3 + [Reply.error(503)] * 2
    for failure in failures:  # half the calls, spread out (so the circuit stays closed)
        fake_openai.push(failure, Reply(text=ANSWER))
    path = pipeline_file(tmp_path, '["provider:primary", "together:meta-llama/Llama-3-8b"]', 1)
    summary = synthesize(config, path, n=10)

    assert summary["failed"] == 0 and summary["examples"] == 10
    assert summary["providers"]["together:meta-llama/Llama-3-8b"]["calls"] == 5
    assert summary["providers"]["primary"]["calls"] == 5
    assert len(fake_together.requests) == 5


@pytest.mark.usefixtures("keys")
def test_a_chain_falls_back_across_apis(
    tmp_path: Path, fake_openai: FakeAPI, fake_anthropic: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "an-test")
    fake_openai.default = Reply.error(500, "down")
    fake_anthropic.default = Reply(text="Anthropic: " + ANSWER, usage=(20, 10))
    config = Config.model_validate(
        {
            "workspace": str(tmp_path / "ws"),
            "providers": {"primary": {"kind": "openai", "model": "gpt-4o-mini", "max_retries": 0}},
        }
    )
    path = pipeline_file(tmp_path, '["provider:primary", "anthropic:claude-haiku-4-5"]')
    summary = synthesize(config, path, n=5)
    assert summary["examples"] == 5 and summary["failed"] == 0
    assert "primary" not in summary["providers"]
    assert summary["providers"]["anthropic:claude-haiku-4-5"]["prompt_tokens"] == 100
    assert all("seed" not in request.body for request in fake_anthropic.requests)


@pytest.mark.usefixtures("keys")
def test_failed_calls_are_recorded_and_a_rerun_retries_only_those(
    tmp_path: Path, fake_openai: FakeAPI
) -> None:
    config = Config.model_validate(
        {
            "workspace": str(tmp_path / "ws"),
            "providers": {"primary": {"kind": "openai", "model": "gpt-4o-mini", "max_retries": 0}},
        }
    )
    fake_openai.push(Reply(text=ANSWER), Reply.error(500), Reply(text=ANSWER), Reply.error(500))
    path = pipeline_file(tmp_path, '"provider:primary"', 1)
    first = synthesize(config, path, n=6)
    assert first["examples"] == 4 and first["failed"] == 2
    assert first["failures_by_reason"] == {"unavailable": 2}
    assert {failure["step"] for failure in first["failures"]} == {"answer"}
    failed_paths = {failure["path"] for failure in first["failures"]}

    before = len(fake_openai.requests)
    second = synthesize(config, path, n=6)
    assert len(fake_openai.requests) - before == 2
    assert second["examples"] == 6 and second["failed"] == 0
    retried = fake_openai.requests[before:]
    assert len({request.body["seed"] for request in retried}) == len(failed_paths)


@pytest.mark.usefixtures("keys")
def test_gates_reject_and_say_why(tmp_path: Path, fake_openai: FakeAPI) -> None:
    config = Config.model_validate({"workspace": str(tmp_path / "ws")})
    fake_openai.push(Reply(text="Too short"), Reply(text="Also short"))
    summary = synthesize(config, pipeline_file(tmp_path, concurrency=1), n=5)
    assert summary["examples"] == 3
    assert summary["failures_by_reason"] == {"gate:min_words": 2}
    assert summary["rejected"] == 2 and summary["failed"] == 0


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "from tuneloop.cli.app import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_a_killed_run_resumes_without_repeating_a_call_and_ends_as_an_uninterrupted_one(
    tmp_path: Path, fake_openai: FakeAPI
) -> None:
    fake_openai.default = Reply(text=ANSWER)
    path = pipeline_file(
        tmp_path, concurrency=1, extra_gates=', custom = ["synth_helpers:kill_after"]'
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": "sk-test",
        "SYNTH_KILL_COUNTER": str(tmp_path / "counter"),
    }
    for name in ("killed", "whole"):
        (tmp_path / f"{name}.toml").write_text(f'workspace = "{tmp_path / name}"\n')
    run = ["synth", "run", str(path), "--n", "8", "--config"]

    killed = _cli([*run, str(tmp_path / "killed.toml")], {**env, "SYNTH_KILL_AFTER": "5"})
    assert killed.returncode == -9
    assert len(fake_openai.requests) == 5
    status = _cli(["synth", "status", "--config", str(tmp_path / "killed.toml")], env)
    assert "interrupted" in status.stdout
    refused = _cli([*run, str(tmp_path / "killed.toml")], env)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = _cli([*run, str(tmp_path / "killed.toml"), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    calls = sent(fake_openai)
    assert len(calls) == 8 and len(set(calls)) == 8  # the 5 paid before the kill: not again

    whole = _cli([*run, str(tmp_path / "whole.toml")], env)
    assert whole.returncode == 0, whole.stderr
    assert set(sent(fake_openai)[8:]) == set(calls)  # the same requests, fresh workspace
    for name in ("support.jsonl", "support_detailed.json"):
        killed_file = tmp_path / "killed" / "synth" / "support" / name
        whole_file = tmp_path / "whole" / "synth" / "support" / name
        assert killed_file.read_text() == whole_file.read_text()


@pytest.mark.usefixtures("keys")
def test_near_copies_of_existing_data_are_dropped(tmp_path: Path) -> None:
    from tuneloop.capture import Tuneloop

    first = Config.model_validate({"workspace": str(tmp_path / "first")})
    summary = synthesize(first, pipeline_file(tmp_path), n=3)
    line = Path(summary["files"]["examples"]).read_text().splitlines()[1]
    messages = json.loads(line)["messages"]

    second = Config.model_validate({"workspace": str(tmp_path / "second")})
    with Tuneloop(second) as client:
        client.log(
            messages[:-1],
            messages[-1]["content"],  # the same request answered the same way
            task="support",
            source="synthetic",
            metadata={"pipeline": "handwritten"},
        )
    again = synthesize(second, pipeline_file(tmp_path), n=3)
    assert again["examples"] == 2 and again["near_duplicates_dropped"] == 1
    kept = Path(again["files"]["examples"]).read_text().splitlines()
    assert line not in kept


@pytest.mark.slow
@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent-upstream"])
def test_a_run_killed_from_outside_loses_nothing_and_repeats_at_most_the_calls_in_flight(
    tmp_path: Path, fake_openai: FakeAPI, idempotent: bool
) -> None:
    import signal
    import time

    fake_openai.default = Reply(text=ANSWER, delay_s=0.05)
    fake_openai.idempotent = idempotent
    path = pipeline_file(tmp_path, concurrency=4)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": "sk-test",
    }
    workspace = tmp_path / "killed"
    (tmp_path / "killed.toml").write_text(f'workspace = "{workspace}"\n')
    code = "from tuneloop.cli.app import main; main()"
    args = ["synth", "run", str(path), "--n", "60", "--config", str(tmp_path / "killed.toml")]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(fake_openai.requests) < 15 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -9
    first = sent(fake_openai)
    assert 15 <= len(first) < 60

    resumed = _cli([*args, "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    second = sent(fake_openai)[len(first) :]
    repeated = set(first) & set(second)
    metadata = json.loads((workspace / "synth" / "support" / "support_metadata.json").read_text())
    resent = metadata["resent_after_crash"]
    assert 1 <= resent <= 4  # only calls still in flight when the process died
    if idempotent:
        # Each resent call the upstream had answered came back from its first answer, free.
        assert not repeated and 1 <= len(fake_openai.replayed) <= resent
    else:
        assert len(repeated) <= resent
    assert len(set(first) | set(second)) == 60
    lines = (workspace / "synth" / "support" / "support.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) == 60
    store = Store(f"sqlite:///{workspace / 'tuneloop.db'}")
    try:
        with store.session() as session:
            rows = session.execute(
                select(Interaction.id, Interaction.response).where(
                    Interaction.task == "support", Interaction.source == "synthetic"
                )
            ).all()
    finally:
        store.close()
    assert len(rows) == len({row.id for row in rows}) == 60  # none lost, none twice
