"""``tuneloop providers list|check`` and ``tuneloop ask`` against the fake servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeAPI, Reply
from typer.testing import CliRunner

from tuneloop.cli.app import app

SECRET = "sk-cli-test-0123456789-SECRET"


@pytest.fixture
def config_file(tmp_path: Path, fake_openai: FakeAPI, fake_anthropic: FakeAPI) -> Path:
    path = tmp_path / "tuneloop.toml"
    path.write_text(f"""
workspace = "{(tmp_path / "ws").as_posix()}"

[providers.gpt]
kind = "openai"
model = "gpt-4o-mini"
base_url = "{fake_openai.base_url}"
api_key_env = "CLI_TEST_OPENAI_KEY"
max_retries = 0

[providers.claude]
kind = "anthropic"
model = "claude-haiku-4-5"
base_url = "{fake_anthropic.base_url}"
api_key_env = "CLI_TEST_ANTHROPIC_KEY"

[providers.both]
kind = "chain"
members = ["provider:gpt", "provider:claude"]
""")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_providers_list_shows_whether_keys_are_set_never_the_keys(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_OPENAI_KEY", SECRET)
    monkeypatch.delenv("CLI_TEST_ANTHROPIC_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "220")
    code, out, err = run("providers", "list", "--config", str(config_file))
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert "set" in rows["gpt"] and "not set" in rows["claude"]
    assert "CLI_TEST_OPENAI_KEY" in out and SECRET not in out + err


def test_providers_check_reports_latency_tokens_and_cost(
    config_file: Path, fake_openai: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_OPENAI_KEY", SECRET)
    fake_openai.push(Reply(text="ok", usage=(10, 1)))
    code, out, err = run("providers", "check", "gpt", "--config", str(config_file))
    assert code == 0, err
    assert "10 in / 1 out tokens" in out and "$0.000002" in out and "ms" in out
    assert fake_openai.requests[0].body["max_completion_tokens"] == 16


def test_check_of_a_provider_without_its_key_fails_in_one_line(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLI_TEST_ANTHROPIC_KEY", raising=False)
    result = CliRunner().invoke(app, ["providers", "check", "claude", "--config", str(config_file)])
    assert result.exit_code != 0
    assert "CLI_TEST_ANTHROPIC_KEY is not set" in str(result.exception)


def test_ask_prints_the_answer_on_stdout_and_the_rest_on_stderr(
    config_file: Path,
    fake_openai: FakeAPI,
    fake_anthropic: FakeAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLI_TEST_OPENAI_KEY", SECRET)
    monkeypatch.setenv("CLI_TEST_ANTHROPIC_KEY", SECRET)
    fake_openai.push(Reply.error(503, "overloaded"))
    fake_anthropic.push(Reply(text='Here you go: {"type": "FRAME"}', usage=(40, 8)))
    code, out, err = run(
        "ask",
        "both",
        "Design a screen",
        "--system",
        "Be terse.",
        "--json",
        "--config",
        str(config_file),
    )
    assert code == 0, err
    assert json.loads(out) == {"type": "FRAME"}
    assert "via claude" in err and "40 in / 8 out tokens" in err
    assert "tried gpt: failed (unavailable" in err and "tried claude: ok" in err
    assert fake_anthropic.requests[0].body["system"] == "Be terse."
    assert SECRET not in out + err


def test_ask_streams(
    config_file: Path, fake_openai: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_OPENAI_KEY", SECRET)
    fake_openai.push(Reply(text="streamed words arrive", chunk_chars=3))
    code, out, err = run(
        "ask", "provider:gpt", "hi", "--stream", "--max-tokens", "20", "--config", str(config_file)
    )
    assert code == 0, err
    assert out == "streamed words arrive\n" and "via gpt" in err
    assert fake_openai.requests[0].body["stream"] is True


def test_ask_with_any_spec_and_an_unknown_spec(config_file: Path) -> None:
    code, out, _err = run(
        "ask",
        "callable:tuneloop.demo.teacher:respond",
        "Design a mobile settings screen.",
        "--config",
        str(config_file),
    )
    assert code == 0 and out.strip()
    result = CliRunner().invoke(app, ["ask", "nope:thing", "hi", "--config", str(config_file)])
    assert result.exit_code != 0 and "unknown provider spec" in str(result.exception)
