"""Eval runner: prompts sent, scores and aggregates stored, provider errors recorded, reports."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import select

from tuneloop.errors import ProviderError
from tuneloop.evaluate.report import comparison_dict, comparison_table
from tuneloop.evaluate.runner import evaluate_provider, percentile, split_reference
from tuneloop.providers import CallableProvider, Completion
from tuneloop.store import EvalResult, EvalRun, Store

SYSTEM = {"role": "system", "content": "Answer in JSON."}


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()


def ex(prompt: str, reference: str, interaction_id: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messages": [
            SYSTEM,
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": reference},
        ]
    }
    if interaction_id:
        record["interaction_id"] = interaction_id
    return record


EXAMPLES = [
    ex("right", '{"type": "FRAME", "n": 1}', "i1"),
    ex("half", '{"type": "FRAME", "n": 2}', "i2"),
    ex("prose", '{"type": "FRAME"}', "i3"),
    ex("boom", '{"type": "FRAME"}', "i4"),
]


def answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
    prompt = messages[-1]["content"]
    if prompt == "boom":
        raise RuntimeError("model crashed")
    text = {
        "right": '{"n": 1, "type": "FRAME"}',
        "half": '{"type": "FRAME", "n": 3}',
        "prose": "Sure! Here is a frame.",
    }[prompt]
    return {"text": text, "completion_tokens": 10, "latency_ms": 100.0 * len(prompt)}


def test_split_reference() -> None:
    prompt, reference = split_reference(EXAMPLES[0]["messages"])
    assert prompt == EXAMPLES[0]["messages"][:2] and reference == '{"type": "FRAME", "n": 1}'
    assert split_reference([{"role": "user", "content": "x"}]) == (
        [{"role": "user", "content": "x"}],
        None,
    )


def test_runner_scores_aggregates_and_records_errors(store: Store) -> None:
    seen: list[list[dict[str, Any]]] = []

    def recording(messages: list[dict[str, Any]]) -> dict[str, Any]:
        seen.append(messages)
        return answer(messages)

    calls: list[tuple[int, int]] = []
    run = evaluate_provider(
        store,
        CallableProvider(recording, name="fake"),
        EXAMPLES,
        task="layout",
        label="v1",
        dataset_id=None,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(messages[-1]["role"] == "user" for messages in seen)  # reference never sent
    metrics = run.metrics
    assert metrics["n"] == 4 and metrics["errors"] == 1
    assert metrics["valid_json_rate"] == 0.5  # right + half; prose and the error are not JSON
    assert metrics["exact_match_rate"] == 0.25
    with store.session() as session:
        stored = session.scalars(select(EvalRun)).one()
        results = session.scalars(select(EvalResult).order_by(EvalResult.id)).all()
        assert stored.label == "v1" and stored.provider == "fake" and stored.split == "eval"
        structural = [r.scores["similarity"] for r in results]
        assert [r.interaction_id for r in results] == ["i1", "i2", "i3", "i4"]
        assert results[3].output == "" and "model crashed" in results[3].scores["error"]
        assert results[0].prompt == EXAMPLES[0]["messages"][:2]
        assert results[0].reference == '{"type": "FRAME", "n": 1}'
    half = structural[1]
    assert structural[0] == 1.0 and 0 < half < 1 and structural[2:] == [0.0, 0.0]
    assert metrics["similarity"] == pytest.approx(round((1.0 + half) / 4, 4))
    # latency and throughput over the three answered examples: 500, 400, 500 ms, 10 tokens each
    assert metrics["latency_ms"] == pytest.approx(466.6667)
    assert metrics["latency_p95_ms"] == 500.0
    assert metrics["tokens_per_s"] == pytest.approx(30 / 1.4, rel=1e-4)
    assert metrics["tokens_estimated"] is False


class RecordingProvider:
    """A provider that records the generation options it was given."""

    name = "recording"

    def __init__(self) -> None:
        self.options: list[tuple[int | None, float]] = []

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        self.options.append((max_tokens, temperature))
        if messages[-1]["content"] == "fail":
            raise ProviderError("recording: unreachable")
        return Completion(text="abcdefgh", model="m", provider=self.name, latency_ms=200.0)


def test_runner_passes_options_and_estimates_missing_tokens(store: Store) -> None:
    provider = RecordingProvider()
    run = evaluate_provider(
        store,
        provider,
        [ex("a", "abcdefgh"), ex("fail", "x")],
        task="t",
        label="base",
        split="train",
        max_new_tokens=32,
    )
    assert provider.options == [(32, 0.0), (32, 0.0)]
    assert run.split == "train" and run.metrics["errors"] == 1
    assert run.metrics["valid_json_rate"] is None  # free-text references: JSON not expected
    assert run.metrics["exact_match_rate"] == 0.5
    assert run.metrics["tokens_estimated"] is True
    assert run.metrics["tokens_per_s"] == pytest.approx(2 / 0.2)  # 8 chars ≈ 2 tokens in 0.2 s
    assert "ProviderError: recording: unreachable" in run.results[1].scores["error"]


def test_empty_example_list_gives_an_empty_run(store: Store) -> None:
    run = evaluate_provider(store, RecordingProvider(), [], task="t", label="base")
    assert run.metrics["n"] == 0 and run.metrics["similarity"] is None
    assert run.metrics["latency_ms"] is None and run.metrics["tokens_per_s"] is None


def test_percentile_is_nearest_rank() -> None:
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == 10
    assert percentile([5.0], 95) == 5.0
    assert percentile(list(range(1, 101)), 95) == 95


def test_comparison_dict_and_table(store: Store) -> None:
    good = evaluate_provider(
        store, CallableProvider(answer, name="good"), EXAMPLES[:2], task="t", label="v1"
    )
    bad = evaluate_provider(
        store, CallableProvider(lambda m: "nope", name="bad"), EXAMPLES[:2], task="t", label="base"
    )
    again = evaluate_provider(
        store, CallableProvider(lambda m: "nope", name="bad"), EXAMPLES[:1], task="t", label="base"
    )
    table = comparison_dict([good, bad, again])
    assert list(table) == ["v1", f"base#{bad.id}", f"base#{again.id}"]
    assert table["v1"]["valid_json_rate"] == 1.0 and table["v1"]["provider"] == "good"
    assert table[f"base#{bad.id}"]["similarity"] == 0.0 and table["v1"]["n"] == 2

    buffer = io.StringIO()
    Console(file=buffer, width=140).print(comparison_table([good, bad]))
    text = buffer.getvalue()
    assert "v1" in text and "base" in text and "valid JSON" in text and "100%" in text


class BatchingProvider:
    """Answers through ``complete_batch`` like a local model; fails batches holding "boom"."""

    name = "batching"

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def complete(self, messages: list[dict[str, Any]], **_: Any) -> Completion:
        raise AssertionError("a batching provider must be called with complete_batch")

    def complete_batch(
        self, conversations: list[list[dict[str, Any]]], **_: Any
    ) -> list[Completion]:
        self.batch_sizes.append(len(conversations))
        if any(c[-1]["content"] == "boom" for c in conversations):
            raise ProviderError("out of memory")
        return [
            Completion(
                text='{"type": "FRAME", "n": 1}',
                model="m",
                provider="batching",
                latency_ms=50.0,
                completion_tokens=5,
            )
            for _ in conversations
        ]


def test_batching_providers_get_batches_and_a_failed_batch_marks_its_examples(
    store: Store,
) -> None:
    provider = BatchingProvider()
    run = evaluate_provider(
        store,
        provider,
        [*EXAMPLES[:3], EXAMPLES[0], EXAMPLES[3]],
        task="t",
        label="b",
        batch_size=2,
    )
    assert provider.batch_sizes == [2, 2, 1]
    assert run.metrics["n"] == 5 and run.metrics["errors"] == 1
    failed = [r for r in run.results if "error" in r.scores]
    assert [r.interaction_id for r in failed] == ["i4"]
    assert "out of memory" in failed[0].scores["error"]
    # latency is the measured wall time of the call that answered (the provider's own 50 ms is
    # not apportioned): both answers of one batch waited the same time
    answered = [r for r in run.results if "error" not in r.scores]
    assert answered[0].latency_ms == answered[1].latency_ms != 50.0
    assert [r.scores["batch_size"] for r in answered] == [2, 2, 2, 2]
    assert run.metrics["batch_size"] == 2
    walls = {answered[0].latency_ms, answered[2].latency_ms}
    assert run.metrics["tokens_per_s"] == pytest.approx(20 / (sum(walls) / 1000), rel=1e-3)
