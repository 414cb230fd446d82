"""Judges: rubric scores with reasons, pairwise in both orders, answers cached in the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tuneloop.evaluate import evaluate_provider, leaderboard
from tuneloop.evaluate.judges import (
    JudgeCache,
    JudgeError,
    PairwiseJudge,
    RubricJudge,
    Trait,
    reference_judge,
)
from tuneloop.evaluate.ratings import Battle
from tuneloop.providers import CallableProvider
from tuneloop.store import JudgeAnswer, Store

PROMPT = [{"role": "user", "content": "Design a login screen"}]
REFERENCE = '{"type": "FRAME", "name": "login", "children": [{"type": "TEXT"}]}'
GOOD = '{"type": "FRAME", "name": "login", "children": [{"type": "TEXT"}]}'
HALF = '{"type": "FRAME", "name": "signup"}'
TRAITS = [Trait("accuracy", "the right screen"), Trait("format", "valid layout JSON")]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()


class Counting:
    """Wraps a judge function and counts how often the judge model is really asked."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.calls.append(messages)
        return self.function(messages)


def test_rubric_scores_traits_with_reasons_through_a_provider() -> None:
    judge = RubricJudge(CallableProvider(reference_judge, name="ref-judge"), TRAITS)
    good = judge.score(PROMPT, GOOD, REFERENCE)
    assert set(good) == {"accuracy", "format"}
    assert good["accuracy"].value == 10 and "similarity 1.00" in good["accuracy"].reason
    half = judge.score(PROMPT, HALF, REFERENCE)
    assert 1 < half["accuracy"].value < 10
    assert judge.score(PROMPT, "no json here", REFERENCE)["format"].value == 1
    request = judge.request(PROMPT, GOOD, REFERENCE)
    assert "accuracy: the right screen" in request[0]["content"]
    assert "[REFERENCE]" in request[1]["content"] and "[ANSWER]" in request[1]["content"]


def test_rubric_judge_answers_that_cannot_be_read_are_judge_errors() -> None:
    for answer in (
        "I think it's fine",
        '{"accuracy": {"score": 11}, "format": 3}',
        '{"accuracy": 7}',
        '{"accuracy": true, "format": 5}',
    ):
        judge = RubricJudge(CallableProvider(lambda m, a=answer: a, name="j"), TRAITS)
        with pytest.raises(JudgeError, match="judge j"):
            judge.score(PROMPT, GOOD, REFERENCE)
    fenced = RubricJudge(
        CallableProvider(
            lambda m: (
                'Scores:\n```json\n{"accuracy": 8, "format": {"score": 9, "reason": "ok"}}\n```'
            ),
            name="j",
        ),
        TRAITS,
    )
    scores = fenced.score(PROMPT, GOOD, None)
    assert scores["accuracy"].value == 8 and scores["format"].reason == "ok"


def test_pairwise_asks_both_orders_and_disagreement_is_a_tie() -> None:
    fair = Counting(reference_judge)
    judge = PairwiseJudge(CallableProvider(fair, name="fair"))
    verdict = judge.compare(PROMPT, GOOD, HALF, REFERENCE)
    assert verdict.winner == "model_a" and verdict.first_order == verdict.second_order
    assert len(fair.calls) == 2
    first, second = (call[1]["content"] for call in fair.calls)
    assert f"[ANSWER A]\n{GOOD}\n" in first and f"[ANSWER B]\n{HALF}\n" in first
    assert f"[ANSWER A]\n{HALF}\n" in second and f"[ANSWER B]\n{GOOD}\n" in second
    assert judge.compare(PROMPT, HALF, GOOD, REFERENCE).winner == "model_b"

    always_a = PairwiseJudge(CallableProvider(lambda m: '{"winner": "A"}', name="biased"))
    biased = always_a.compare(PROMPT, GOOD, HALF)
    assert (biased.first_order, biased.second_order, biased.winner) == ("model_a", "model_b", "tie")
    with pytest.raises(JudgeError, match="named no winner"):
        PairwiseJudge(CallableProvider(lambda m: '{"winner": "C"}', name="x")).compare(
            PROMPT, GOOD, HALF
        )


def test_judge_answers_are_cached_in_the_store(store: Store) -> None:
    counting = Counting(reference_judge)
    provider = CallableProvider(counting, name="ref-judge")
    first = RubricJudge(provider, TRAITS, cache=JudgeCache(store))
    scores = first.score(PROMPT, HALF, REFERENCE)
    assert len(counting.calls) == 1
    # a new judge object (a re-run in another process) asks the store, not the model
    again = RubricJudge(provider, TRAITS, cache=JudgeCache(store))
    assert again.score(PROMPT, HALF, REFERENCE) == scores
    assert len(counting.calls) == 1 and again.cache.hits == 1
    with store.session() as session:
        rows = session.query(JudgeAnswer).all()
        assert len(rows) == 1 and rows[0].kind == "rubric" and rows[0].judge == "ref-judge"
    # a different answer is a different request
    again.score(PROMPT, GOOD, REFERENCE)
    assert len(counting.calls) == 2
    # the same request to another judge model is not served from this judge's cache
    other = RubricJudge(CallableProvider(counting, name="other"), TRAITS, cache=JudgeCache(store))
    other.score(PROMPT, HALF, REFERENCE)
    assert len(counting.calls) == 3


def test_rubric_metrics_plug_into_a_run_with_one_judge_call_per_example(store: Store) -> None:
    counting = Counting(reference_judge)
    judge = RubricJudge(
        CallableProvider(counting, name="ref-judge"), TRAITS, cache=JudgeCache(store)
    )
    examples = [{"messages": [*PROMPT, {"role": "assistant", "content": REFERENCE}]}] * 2
    answers = iter([GOOD, HALF])
    run = evaluate_provider(
        store,
        CallableProvider(lambda m: next(answers), name="m"),
        examples,
        task="t",
        label="m",
        metrics=judge.metrics(),
    )
    assert len(counting.calls) == 2  # not once per trait
    assert run.metrics["metrics"] == ["judge_accuracy", "judge_format"]
    assert run.results[0].scores["judge_accuracy"] == 10
    assert "similarity" in run.results[0].scores["reasons"]["judge_accuracy"]
    assert run.metrics["judge_accuracy"] == pytest.approx(
        (10 + run.results[1].scores["judge_accuracy"]) / 2
    )


def test_a_failing_judge_is_recorded_on_the_example_not_fatal(store: Store) -> None:
    judge = RubricJudge(CallableProvider(lambda m: "nope", name="broken"), TRAITS)
    examples = [{"messages": [*PROMPT, {"role": "assistant", "content": REFERENCE}]}]
    run = evaluate_provider(
        store,
        CallableProvider(lambda m: GOOD, name="m"),
        examples,
        task="t",
        label="m",
        metrics=judge.metrics(),
    )
    scores = run.results[0].scores
    assert (
        scores["judge_accuracy"] is None and "broken" in scores["metric_errors"]["judge_accuracy"]
    )
    assert run.metrics["judge_accuracy"] is None and run.metrics["errors"] == 0


def test_pairwise_battles_feed_the_leaderboard() -> None:
    judge = PairwiseJudge(CallableProvider(reference_judge, name="ref-judge"))
    prompts = [PROMPT] * 3
    outputs = {
        "base": ["nope", HALF, "nope"],
        "v1": [HALF, GOOD, GOOD],
        "teacher": [GOOD, GOOD, GOOD],
    }
    battles = judge.battles(prompts, outputs, [REFERENCE] * 3)
    assert len(battles) == 9
    assert battles[:3] == [
        Battle("base", "v1", "model_b"),
        Battle("base", "teacher", "model_b"),
        Battle("v1", "teacher", "model_b"),
    ]
    board = leaderboard(battles, rounds=50)
    assert [row.model for row in board] == ["teacher", "v1", "base"]
    assert (
        json.loads(reference_judge(judge.request(PROMPT, GOOD, GOOD, REFERENCE)))["winner"] == "tie"
    )
