"""The one definition of "valid JSON" that capture, curate, evaluate and the gateway share."""

from __future__ import annotations

import pytest

from tuneloop.capture.quality import json_validity
from tuneloop.evaluate import valid_json
from tuneloop.jsontext import (
    expects_json,
    extract_json,
    is_valid_json,
    normalise_output,
    parse_json,
    strip_fence,
)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('{"a": 1}', True),
        ('  {"a": 1}\n', True),
        ('```json\n{"a": 1}\n```', True),
        ('```json{"a": 1}```', True),  # fence without newlines
        ("```\n[1, 2]\n```", True),
        ("null", True),
        ('{"a": NaN}', False),  # Python's extension, not JSON
        ('{"a": Infinity}', False),
        ("[-Infinity]", False),
        ('{"a": 1} trailing', False),
        ('Sure! {"a": 1}', False),
        ('{"a": 1}{"b": 2}', False),
        ("", False),
        ("```json\n{unclosed", False),
    ],
)
def test_strict_rules(text: str, ok: bool) -> None:
    assert is_valid_json(text) is ok


def test_capture_and_evaluate_agree() -> None:
    cases = ['{"a": NaN}', '```json{"a": 1}```', '{"a": 1}', "Sure: {}", "[1, 2", "```\n{}\n```"]
    for text in cases:
        assert json_validity(text, None) in (valid_json(text), None), text
        assert valid_json(text) is is_valid_json(text), text


def test_lenient_finds_json_in_prose_and_fences() -> None:
    assert extract_json('Here: {"a": 1} done', lenient=True) == {"a": 1}
    assert extract_json('text\n```json\n{"b": 2}\n```\nmore', lenient=True) == {"b": 2}
    assert parse_json('x {"a": NaN} y', lenient=True).ok is False
    assert parse_json("no json here", lenient=True).ok is False
    # a bad early candidate does not hide a good later one
    assert extract_json("a {bad} b [1, 2] c", lenient=True) == [1, 2]


def test_null_is_valid_but_extracts_as_none() -> None:
    result = parse_json("null")
    assert result.ok and result.value is None and result.found == "whole"
    assert parse_json("```json\nnull\n```").found == "fence"


def test_strip_fence_language() -> None:
    assert strip_fence("```JSON\n{}\n```") == ("{}", "json")
    assert strip_fence("```\n{}\n```") == ("{}", "")
    assert strip_fence(" plain ") == ("plain", None)


def test_expects_json() -> None:
    assert expects_json("```json\n{unclosed")
    assert expects_json("[1]")
    assert not expects_json("hello {}")
    assert expects_json("hello", {"response_format": "json"})
    assert expects_json("hello", {"response_format": {"type": "json_schema"}})


def test_normalise_unwraps_reasoning_envelope() -> None:
    text = 'Here you go:\n```json\n{"reasoning": "a list fits", "layout": {"type": "FRAME"}}\n```'
    result = normalise_output(text, unwrap_keys=("layout",))
    assert result.ok
    assert result.value == {"type": "FRAME"}
    assert result.reasoning == "a list fits"
    assert result.steps == ("extracted", "unwrapped:layout")
    assert is_valid_json(result.text)


def test_normalise_keeps_objects_with_other_keys_and_plain_json() -> None:
    kept = normalise_output('{"layout": {"a": 1}, "title": "x"}', unwrap_keys=("layout",))
    assert kept.value == {"layout": {"a": 1}, "title": "x"} and kept.steps == ()
    assert kept.text == '{"layout": {"a": 1}, "title": "x"}'
    plain = normalise_output("not json at all")
    assert not plain.ok and plain.text == "not json at all"
