"""Routing decisions as plain functions: no server, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from tuneloop.gateway.routing import (
    StageRow,
    Target,
    Validator,
    output_check,
    pick_route,
    plan,
    routes_from_stages,
    sticky_bucket,
)
from tuneloop.providers import Completion, InvalidOutput, OutputCheck

TEACHER = Target("teacher", "callable:t:t")


def test_routes_take_the_newest_version_of_each_stage_and_its_serving_spec() -> None:
    routes = routes_from_stages(
        [
            StageRow("ui", 1, "production", 100),
            StageRow("ui", 3, "production", 100),
            StageRow("ui", 4, "canary", 10, "openai-compatible:http://vllm:8000/v1|ui-v4"),
            StageRow("ui", 5, "shadow", 0),
            StageRow("other", 2, "shadow", 0),
        ]
    )
    ui = routes["ui"]
    assert ui.production == Target("ui@v3", "registry:ui@v3")
    assert ui.canary == Target("ui@v4", "openai-compatible:http://vllm:8000/v1|ui-v4")
    assert ui.canary_percent == 10
    assert ui.shadow == Target("ui@v5", "registry:ui@v5")
    assert routes["other"].production is None


def test_canary_share_is_sticky_and_close_to_the_configured_percent() -> None:
    routes = routes_from_stages(
        [StageRow("ui", 1, "production", 100), StageRow("ui", 2, "canary", 10)]
    )["ui"]
    picks = [pick_route(routes, f"session-{n}")[0] for n in range(4000)]
    share = picks.count("canary") / len(picks)
    assert 0.08 < share < 0.12
    for n in range(50):  # the same session always lands on the same side
        assert pick_route(routes, f"session-{n}") == pick_route(routes, f"session-{n}")
    assert 0 <= sticky_bucket("x", "ui") < 100
    assert sticky_bucket("x", "ui") != sticky_bucket("x", "other-task")


def test_no_version_routes_to_the_fallback_and_canary_alone_takes_everything() -> None:
    assert pick_route(None, "s") == ("fallback", None)
    only_canary = routes_from_stages([StageRow("ui", 2, "canary", 5)])["ui"]
    assert pick_route(only_canary, "s")[0] == "canary"


def test_plan_ends_in_the_fallbacks_without_repeats() -> None:
    student = Target("ui@v1", "registry:ui@v1")
    assert plan(student, [TEACHER]) == [student, TEACHER]
    assert plan(TEACHER, [TEACHER]) == [TEACHER]
    assert plan(None, [TEACHER]) == [TEACHER]


def check(
    task: str, response_format: dict[str, Any] | None = None, validator: Validator | None = None
) -> OutputCheck:
    return output_check(
        task, response_format, json_tasks=["ui"], unwrap_keys=["layout"], validator=validator
    )


def answer(text: str) -> Completion:
    return Completion(text=text, model="m", provider="p", latency_ms=1.0)


def test_json_tasks_normalise_and_reject_prose() -> None:
    wrapped = '```json\n{"reasoning": "r", "layout": {"type": "frame"}}\n```'
    assert check("ui").apply(answer(wrapped)).text == '{"type": "frame"}'
    with pytest.raises(InvalidOutput) as caught:
        check("ui").apply(answer("a frame with a button"))
    assert caught.value.reason == "not_json"
    assert check("chat").apply(answer("hello")).text == "hello"  # not a JSON task


def test_response_format_asks_for_json_and_its_schema() -> None:
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert check("chat", fmt).apply(answer('{"name": "x"}')).text == '{"name": "x"}'
    with pytest.raises(InvalidOutput) as caught:
        check("chat", fmt).apply(answer('{"name": 3}'))
    assert caught.value.reason == "schema" and "name" in str(caught.value)
    with pytest.raises(InvalidOutput):
        check("chat", {"type": "json_object"}).apply(answer("plain words"))


def test_custom_validator_sees_the_value_of_json_tasks() -> None:
    def no_todo(value: Any) -> bool:
        if "TODO" in str(value):
            raise ValueError("the answer has a TODO")
        return value != {"empty": True}

    assert check("ui", validator=no_todo).apply(answer('{"a": 1}')).text == '{"a": 1}'
    for text, detail in (('{"a": "TODO"}', "the answer has a TODO"), ('{"empty": true}', "")):
        with pytest.raises(InvalidOutput) as caught:
            check("ui", validator=no_todo).apply(answer(text))
        assert caught.value.reason == "validator" and detail in str(caught.value)
