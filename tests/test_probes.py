"""Prompt-reading probes: held-out words, exact answers, and a scorer that can fail."""

from __future__ import annotations

import json
import random

import pytest

from tuneloop.evaluate import PROBE_KINDS, ReadingTask, probe_tasks, pseudo_word, reading_task


def test_training_and_probe_words_never_coincide() -> None:
    rng = random.Random(0)
    training = {pseudo_word(rng, held_out=False) for _ in range(5000)}
    held_out = {pseudo_word(rng, held_out=True) for _ in range(5000)}
    assert len(training) > 3000 and len(held_out) > 3000
    assert not training & held_out


def test_probe_set_is_fixed_and_uses_only_held_out_words() -> None:
    first, second = probe_tasks(10), probe_tasks(10)
    assert first == second
    assert [task.kind for task in first].count("copy") == 10
    training_rng = random.Random(1)
    training = {pseudo_word(training_rng, held_out=False) for _ in range(20000)}
    for task in first:
        words = set(task.prompt.replace(",", " ").replace("\n", " ").split())
        assert not words & training


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_a_task_accepts_its_answer_and_rejects_near_misses(kind: str) -> None:
    rng = random.Random(3)
    task = reading_task(kind, rng, lambda: pseudo_word(rng, held_out=True))
    assert task.passes(task.answer)
    assert task.passes(f"  {task.answer}\n")
    assert not task.passes(task.answer[:-2])
    assert not task.passes("")
    if kind != "json_shape":
        assert task.answer in task.prompt  # the answer is in the prompt: reading is enough


def test_json_shape_compares_values_not_spelling() -> None:
    task = ReadingTask("json_shape", "…", json.dumps({"name": "kelvo", "type": "tarin"}))
    assert task.passes('{"type": "tarin", "name": "kelvo"}')
    assert not task.passes('{"name": "kelvo", "type": "tarinn"}')
    assert not task.passes('{"name": "kelvo", "type": "tarin"')


def test_an_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="unknown probe kind 'spell'"):
        reading_task("spell", random.Random(0), lambda: "x")


def test_a_word_source_too_small_for_distinct_words_is_an_error_not_a_hang() -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError, match="could not draw"):
        reading_task("recall", rng, lambda: rng.choice(["alpha", "beta"]))
