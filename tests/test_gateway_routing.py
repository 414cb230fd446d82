"""Routing decisions as plain functions: no server, no clock."""

from __future__ import annotations

import pytest

from tuneloop.gateway.routing import (
    AnswerRejected,
    AnswerRules,
    StageRow,
    Target,
    check_answer,
    pick_route,
    plan,
    routes_from_stages,
    rules_for,
    sticky_bucket,
)

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


def test_json_tasks_normalise_and_reject_prose() -> None:
    rules = rules_for("ui", None, json_tasks=["ui"], unwrap_keys=["layout"], validator=None)
    wrapped = '```json\n{"reasoning": "r", "layout": {"type": "frame"}}\n```'
    assert check_answer("ui", wrapped, rules) == '{"type": "frame"}'
    with pytest.raises(AnswerRejected) as caught:
        check_answer("ui", "a frame with a button", rules)
    assert caught.value.reason == "invalid_json"
    free = rules_for("chat", None, json_tasks=["ui"], unwrap_keys=["layout"], validator=None)
    assert check_answer("chat", "hello", free) == "hello"


def test_response_format_schema_and_custom_validator() -> None:
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    rules = rules_for(
        "chat",
        {"type": "json_schema", "json_schema": {"schema": schema}},
        json_tasks=[],
        unwrap_keys=[],
        validator=None,
    )
    assert check_answer("chat", '{"name": "x"}', rules) == '{"name": "x"}'
    with pytest.raises(AnswerRejected) as caught:
        check_answer("chat", '{"name": 3}', rules)
    assert caught.value.reason == "schema" and "name" in caught.value.detail

    def no_todo(task: str, text: str) -> bool:
        if "TODO" in text:
            raise ValueError("the answer has a TODO")
        return "ok" in text

    custom = AnswerRules(validator=no_todo)
    assert check_answer("chat", "ok", custom) == "ok"
    for text, detail in (("TODO ok", "the answer has a TODO"), ("nope", "rejected")):
        with pytest.raises(AnswerRejected) as caught:
            check_answer("chat", text, custom)
        assert caught.value.reason == "validator" and detail in caught.value.detail
