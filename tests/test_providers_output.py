"""Output checks per task: JSON, JSON Schema, custom validators, normalisation, and the chain
falling through on invalid output (the crafter rule) — from config, against the fake servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeAPI, Reply

from tuneloop.config import OutputConfig, load_config
from tuneloop.providers import (
    CallableProvider,
    Completion,
    FallbackChain,
    InvalidOutput,
    StreamInterrupted,
    build_provider,
)
from tuneloop.providers.output import CheckedProvider, OutputCheck, checked

HELLO = [{"role": "user", "content": "Design a settings screen."}]
LAYOUT_SCHEMA = {
    "type": "object",
    "required": ["type", "children"],
    "properties": {"type": {"enum": ["FRAME"]}, "children": {"type": "array"}},
}
LAYOUT = {"type": "FRAME", "children": []}


def validate_layout(value: Any) -> bool:
    """A custom validator: a frame needs a name."""
    return isinstance(value, dict) and bool(value.get("name"))


def strict_layout(value: Any) -> None:
    if not value.get("children"):
        raise ValueError("a frame without children")


def completion(text: str) -> Completion:
    return Completion(text=text, model="m", provider="p", latency_ms=1.0)


def test_normalisation_strips_fences_prose_and_envelopes() -> None:
    check = OutputCheck(json=True, unwrap=("layout",))
    fenced = check.apply(completion('```json\n{"type": "FRAME", "children": []}\n```'))
    assert json.loads(fenced.text) == LAYOUT
    prose = check.apply(completion('Here is the layout: {"type": "FRAME", "children": []} Done.'))
    assert json.loads(prose.text) == LAYOUT
    wrapped = check.apply(
        completion(json.dumps({"reasoning": "a list of toggles", "layout": LAYOUT}))
    )
    assert json.loads(wrapped.text) == LAYOUT and wrapped.reasoning == "a list of toggles"


def test_answers_that_are_not_json_or_fail_the_schema_are_invalid_output() -> None:
    with pytest.raises(InvalidOutput) as caught:
        OutputCheck(json=True).apply(completion("Sure! I cannot do that."))
    assert caught.value.reason == "not_json" and "cannot do that" not in str(caught.value)

    check = OutputCheck(json=True, schema=LAYOUT_SCHEMA, schema_name="layout.schema.json")
    with pytest.raises(InvalidOutput) as caught:
        check.apply(completion('{"type": "SECRET-VALUE", "children": []}'))
    assert caught.value.reason == "schema"
    assert "$.type" in str(caught.value) and "'enum'" in str(caught.value)
    assert "SECRET-VALUE" not in str(caught.value)  # the answer never appears in the error
    assert json.loads(check.apply(completion(json.dumps(LAYOUT))).text) == LAYOUT


def test_custom_validators_reject_by_false_or_by_raising(tmp_path: Path) -> None:
    config = OutputConfig(json=True, validator="test_providers_output:validate_layout")
    check = OutputCheck.from_config(config)
    with pytest.raises(InvalidOutput, match="validate_layout rejected") as caught:
        check.apply(completion(json.dumps(LAYOUT)))
    assert caught.value.reason == "validator"
    assert check.apply(completion('{"name": "Settings"}')).text == '{"name": "Settings"}'

    raising = OutputCheck.from_config(
        OutputConfig(json=True, validator="test_providers_output:strict_layout")
    )
    with pytest.raises(InvalidOutput, match="ValueError: a frame without children"):
        raising.apply(completion(json.dumps(LAYOUT)))


def test_schema_files_are_loaded_and_checked(tmp_path: Path) -> None:
    schema_file = tmp_path / "layout.schema.json"
    schema_file.write_text(json.dumps(LAYOUT_SCHEMA))
    check = OutputCheck.from_config(OutputConfig(schema=schema_file))
    assert check.needs_json and check.schema == LAYOUT_SCHEMA
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": 12}')
    with pytest.raises(Exception, match="not a valid JSON Schema"):
        OutputCheck.from_config(OutputConfig(schema=broken))


def test_a_checked_stream_checks_its_final_answer() -> None:
    provider = checked(CallableProvider(lambda _m: "not json", name="fn"), OutputCheck(json=True))
    assert isinstance(provider, CheckedProvider)
    with pytest.raises(InvalidOutput):
        list(provider.stream(HELLO))
    good = checked(
        CallableProvider(lambda _m: "```json\n[1, 2]\n```", name="fn"), OutputCheck(json=True)
    )
    chunks = list(good.stream(HELLO))
    assert chunks[0].text.startswith("```")  # deltas pass through as they come
    assert chunks[-1].completion is not None and chunks[-1].completion.text == "[1, 2]"


def test_a_chain_with_a_check_falls_through_on_invalid_output_once_streaming_has_not_begun() -> (
    None
):
    chain = checked(
        FallbackChain(
            [
                CallableProvider(lambda _m: "Sorry, no JSON today.", name="ft"),
                CallableProvider(lambda _m: json.dumps(LAYOUT), name="claude"),
            ]
        ),
        OutputCheck(json=True),
    )
    answer = chain.complete(HELLO)
    assert answer.provider == "claude"
    assert [(a.provider, a.error) for a in answer.trail] == [
        ("ft", "invalid_output"),
        ("claude", None),
    ]
    with pytest.raises(StreamInterrupted, match="invalid_output"):
        list(chain.stream(HELLO))  # the bad answer had already streamed out


def test_the_crafter_setup_from_config(
    tmp_path: Path,
    fake_together: FakeAPI,
    fake_anthropic: FakeAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fine-tuned Llama on Together first, Claude as the fallback when the answer is not a
    valid layout; Claude's {"reasoning", "layout"} envelope is unwrapped."""
    monkeypatch.setenv("TOGETHER_API_KEY", "t-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a-key")
    (tmp_path / "layout.schema.json").write_text(json.dumps(LAYOUT_SCHEMA))
    (tmp_path / "tuneloop.toml").write_text(f"""
teacher = "provider:crafter"

[providers.llama-ft]
kind = "together"
model = "acme/Meta-Llama-3.1-8B-Instruct-Reference-ft-123"
base_url = "{fake_together.base_url}"
max_retries = 0
prices = {{ input = 0.02, output = 0.02 }}

[providers.claude]
kind = "anthropic"
model = "claude-opus-4-5"
base_url = "{fake_anthropic.base_url}"

[providers.crafter]
kind = "chain"
members = ["provider:llama-ft", "provider:claude"]
fallback_on = ["retryable", "invalid_output"]
output = {{ json = true, schema = "layout.schema.json", unwrap = "layout" }}
""")
    config = load_config(tmp_path / "tuneloop.toml", environ={})
    teacher = build_provider(config.teacher, providers=config.providers)

    fake_together.push(
        Reply(text='```json\n{"type": "FRAME", "children": [1]}\n```', usage=(1000, 1000))
    )
    first = teacher.complete(HELLO)
    assert first.provider == "llama-ft"
    assert json.loads(first.text) == {"type": "FRAME", "children": [1]}
    assert first.cost_usd == pytest.approx(2000 * 0.02 / 1e6)

    fake_together.push(Reply(text='{"type": "TEXT"}'))  # valid JSON, fails the schema
    fake_anthropic.push(
        Reply(text=json.dumps({"reasoning": "toggles in a list", "layout": LAYOUT}))
    )
    second = teacher.complete(HELLO)
    assert second.provider == "claude" and json.loads(second.text) == LAYOUT
    assert second.reasoning == "toggles in a list"
    assert [(a.provider, a.outcome, a.error) for a in second.trail] == [
        ("llama-ft", "failed", "invalid_output"),
        ("claude", "ok", None),
    ]
    assert "fails the 'required' rule" in (second.trail[0].detail or "")

    fake_together.push(Reply.error(401))  # authentication is not in fallback_on
    with pytest.raises(Exception, match="HTTP 401"):
        teacher.complete(HELLO)
