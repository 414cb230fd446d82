"""Metrics: JSON parsing, exact match, and the properties of structural similarity."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tuneloop.evaluate.metrics import (
    exact_match,
    parse_json_output,
    score_output,
    structural_similarity,
    text_similarity,
    tree_similarity,
    valid_json,
)

LAYOUT = {
    "type": "FRAME",
    "name": "Dashboard",
    "layout": {"mode": "VERTICAL", "gap": 16},
    "children": [
        {"type": "TEXT", "text": "Revenue"},
        {"type": "CARD", "children": [{"type": "TEXT", "text": "$1,200"}]},
        {"type": "BUTTON", "label": "Export"},
    ],
}


def sim(output: Any, reference: Any) -> float:
    return structural_similarity(json.dumps(output), json.dumps(reference))


def test_parse_json_output_accepts_fences_and_rejects_prose() -> None:
    assert parse_json_output('{"a": 1}') == {"a": 1}
    assert parse_json_output('  ```json\n{"a": [1, 2]}\n```  ') == {"a": [1, 2]}
    assert parse_json_output("```\n[1]\n```") == [1]
    assert parse_json_output('Here it is: {"a": 1}') is None
    assert parse_json_output('{"a": 1') is None
    assert parse_json_output('{"a": NaN}') is None
    assert valid_json("null") and parse_json_output("null") is None
    assert not valid_json("") and not valid_json("hello")


def test_exact_match_ignores_key_order_and_whitespace() -> None:
    assert exact_match('{"a": 1, "b": [1, 2]}', '```json\n{"b":[1,2],"a":1.0}\n```')
    assert not exact_match('{"a": [2, 1]}', '{"a": [1, 2]}')
    assert not exact_match('{"a": true}', '{"a": 1}')
    assert exact_match(" plain text\n", "plain text")
    assert not exact_match("plain", "text")


def test_identical_trees_score_one() -> None:
    assert sim(LAYOUT, LAYOUT) == 1.0
    shuffled = dict(reversed(list(LAYOUT.items())))
    assert sim(shuffled, LAYOUT) == 1.0  # object keys are order-insensitive
    assert sim({}, {}) == 1.0 and sim([], []) == 1.0
    fenced = "```json\n" + json.dumps(LAYOUT) + "\n```"
    assert structural_similarity(fenced, json.dumps(LAYOUT)) == 1.0


def test_disjoint_or_non_json_outputs_score_zero() -> None:
    assert sim({"x": "a", "y": [True]}, {"a": 1, "b": {"c": 2}}) == 0.0
    assert structural_similarity("not json at all", json.dumps(LAYOUT)) == 0.0
    assert sim([LAYOUT], LAYOUT) == 0.0  # different root types
    assert sim(3, 4) == 0.0 and sim("a", "a") == 1.0
    with pytest.raises(ValueError, match="reference is not JSON"):
        structural_similarity("{}", "free text")


def test_partial_trees_score_in_between_and_grow_as_more_is_right() -> None:
    # Build the output up from nothing, one reference field at a time.
    steps: list[dict[str, Any]] = [{}]
    for key, value in LAYOUT.items():
        steps.append({**steps[-1], key: value})
    scores = [sim(step, LAYOUT) for step in steps]
    assert scores[0] < 0.2 and scores[-1] == 1.0
    assert all(0 < s < 1 for s in scores[1:-1])
    assert scores == sorted(scores) and len(set(scores)) == len(scores)


def test_fixing_values_and_types_raises_the_score() -> None:
    wrong_values = json.loads(json.dumps(LAYOUT))
    wrong_values["name"] = "Settings"
    wrong_values["layout"]["gap"] = 8
    one_fixed = json.loads(json.dumps(wrong_values))
    one_fixed["name"] = "Dashboard"
    wrong_type = {**LAYOUT, "layout": "VERTICAL"}
    assert sim(wrong_values, LAYOUT) < sim(one_fixed, LAYOUT) < 1.0
    assert sim(wrong_type, LAYOUT) < sim(wrong_values, LAYOUT)


def test_arrays_are_positional_and_keys_count_anywhere() -> None:
    ref = {"items": [{"id": 1}, {"id": 2}, {"id": 3}]}
    assert sim({"items": [{"id": 1}, {"id": 2}]}, ref) > sim({"items": [{"id": 2}, {"id": 3}]}, ref)
    nested_elsewhere = {"wrapper": {"items": [{"id": 1}]}}
    assert sim(nested_elsewhere, ref) > sim({"other": [{"x": 1}]}, ref)  # right key names


def test_similarity_is_symmetric_and_bounded_on_random_trees() -> None:
    rng = random.Random(7)

    def tree(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice([1, 2, "a", "b", True, None])
        if rng.random() < 0.5:
            return [tree(depth - 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice("abcde"): tree(depth - 1) for _ in range(rng.randint(0, 3))}

    for _ in range(300):
        a, b = tree(4), tree(4)
        score = tree_similarity(a, b)
        assert 0.0 <= score <= 1.0
        assert score == pytest.approx(tree_similarity(b, a))
        assert tree_similarity(a, a) == 1.0


def test_text_similarity_and_score_output() -> None:
    assert text_similarity("the cat sat", "The cat sat") == 1.0
    assert text_similarity("a b", "c d") == 0.0
    assert 0 < text_similarity("the cat", "the dog") < 1
    json_scores = score_output('{"a": 1}', '{"a": 1}')
    assert json_scores == {
        "valid_json": True,
        "similarity": 1.0,
        "similarity_kind": "json",
        "exact_match": True,
    }
    text_scores = score_output("hello there", "hello world")
    assert text_scores["valid_json"] is None and text_scores["similarity_kind"] == "text"
    assert score_output("{}", None) == {
        "valid_json": True,
        "similarity": None,
        "similarity_kind": None,
        "exact_match": None,
    }
