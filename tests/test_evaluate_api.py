"""Evaluate's public API: user metrics, breakdowns with intervals, error counts, first failure."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tuneloop.errors import InputError
from tuneloop.evaluate import (
    attach_metadata,
    bootstrap_mean,
    breakdown_table,
    comparison_table,
    evaluate_provider,
    group_value,
    resolve_metrics,
    run_errors,
)
from tuneloop.providers import CallableProvider, Completion
from tuneloop.store import Interaction, Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()


def ex(prompt: str, reference: str, **metadata: Any) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": reference},
        ],
        "metadata": metadata,
    }


def echo(messages: list[dict[str, Any]]) -> str:
    return messages[-1]["content"]


def length_ratio(output: str, reference: str | None, example: dict[str, Any]) -> float | None:
    """A user metric used by spec in these tests."""
    if reference is None:
        return None
    return len(output) / max(1, len(reference))


def test_bootstrap_mean_interval_properties() -> None:
    small = bootstrap_mean([1, 0, 1, 1, 0, 1, 0, 1])
    assert small.n == 8 and small.mean == 0.625
    assert small.low is not None and small.high is not None
    assert 0 <= small.low < small.mean < small.high <= 1
    assert bootstrap_mean([1, 0, 1, 1, 0, 1, 0, 1]) == small  # seeded: reproducible
    large = bootstrap_mean([1, 0, 1, 1, 0, 1, 0, 1] * 25)
    assert large.mean == small.mean
    assert large.high - large.low < (small.high - small.low) / 2  # √25 = 5× more data
    constant = bootstrap_mean([0.5, 0.5, 0.5])
    assert (constant.low, constant.high) == (0.5, 0.5)
    assert bootstrap_mean([None, True, None]).to_dict() == {
        "n": 1,
        "mean": 1.0,
        "low": 1.0,
        "high": 1.0,
    }
    assert bootstrap_mean([]).mean is None


def test_group_value_reads_metadata_nested_keys_and_top_level_fields() -> None:
    example = {"metadata": {"wording": "new", "screen": {"category": "settings"}}, "split": "x"}
    assert group_value(example, "wording") == "new"
    assert group_value(example, "screen/category") == "settings"
    assert group_value(example, "split") == "x"
    assert group_value(example, "missing") == "(none)"


def test_user_metrics_by_callable_and_spec_and_breakdown(store: Store) -> None:
    examples = [
        ex("abc", "abc", wording="seen"),
        ex("ab", "abcd", wording="new"),
        ex("xyz", "xyz", wording="seen"),
        ex("q", "qq", wording="new"),
    ]
    calls: list[tuple[str, str | None, str]] = []

    def starts_same(output: str, reference: str | None, example: dict[str, Any]) -> float:
        calls.append((output, reference, example["metadata"]["wording"]))
        return float(bool(reference) and output[:1] == reference[:1])

    run = evaluate_provider(
        store,
        CallableProvider(echo, name="echo"),
        examples,
        task="t",
        label="echo",
        metrics={"first_char": starts_same, "length_ratio": "test_evaluate_api:length_ratio"},
        group_by=["wording"],
    )
    assert calls[1] == ("ab", "abcd", "new")
    metrics = run.metrics
    assert metrics["metrics"] == ["first_char", "length_ratio"]
    assert metrics["first_char"] == 1.0
    assert metrics["length_ratio"] == pytest.approx((1 + 0.5 + 1 + 0.5) / 4)
    assert metrics["exact_match_rate"] == 0.5
    low, high = metrics["intervals"]["exact_match_rate"]
    assert 0 <= low <= 0.5 <= high <= 1
    by_wording = metrics["breakdown"]["wording"]
    assert set(by_wording) == {"new", "seen"}
    assert by_wording["seen"]["exact_match"] == {"n": 2, "mean": 1.0, "low": 1.0, "high": 1.0}
    assert by_wording["new"]["exact_match"]["mean"] == 0.0
    assert by_wording["new"]["length_ratio"]["mean"] == 0.5
    assert run.results[0].scores["groups"] == {"wording": "seen"}

    buffer = io.StringIO()
    Console(file=buffer, width=200).print(breakdown_table([run], "wording"))
    text = buffer.getvalue()
    assert "seen" in text and "new" in text and "length_ratio" in text


def test_bad_user_metrics_are_named_errors(store: Store) -> None:
    with pytest.raises(InputError, match="metric 'm'.*no attribute"):
        resolve_metrics({"m": "test_evaluate_api:nope"})
    with pytest.raises(InputError, match="taken by a built-in"):
        resolve_metrics({"similarity": length_ratio})
    with pytest.raises(InputError, match="not callable"):
        resolve_metrics({"m": "json:__name__"})

    def broken(output: str, reference: str | None, example: dict[str, Any]) -> float:
        raise KeyError("secret user text")

    with pytest.raises(InputError, match="metric 'broken' raised KeyError on example 0") as info:
        evaluate_provider(
            store,
            CallableProvider(echo),
            [ex("a", "a")],
            task="t",
            label="x",
            metrics={"broken": broken},
        )
    assert "secret user text" not in str(info.value)
    with pytest.raises(InputError, match="returned str"):
        evaluate_provider(
            store,
            CallableProvider(echo),
            [ex("a", "a")],
            task="t",
            label="x",
            metrics={"text": lambda o, r, e: "high"},
        )


class CannotLoad:
    """A batching provider whose model cannot load: every call fails the same way."""

    name = "broken-model"

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, messages: list[dict[str, Any]], **_: Any) -> Completion:
        raise AssertionError("batching providers get complete_batch")

    def complete_batch(self, conversations: list[Any], **_: Any) -> list[Completion]:
        self.calls += 1
        raise OSError("no model weights in /missing")


def test_a_model_that_cannot_load_is_tried_once_and_is_an_error(store: Store) -> None:
    provider = CannotLoad()
    examples = [ex(f"p{i}", '{"a": 1}') for i in range(5)]
    run = evaluate_provider(store, provider, examples, task="t", label="broken", batch_size=2)
    assert provider.calls == 1  # not once per batch
    assert run.metrics["n"] == 5 and run.metrics["errors"] == 5
    assert run.metrics["first_error"] == "OSError: no model weights in /missing"
    assert all(r.scores["error"] == "OSError: no model weights in /missing" for r in run.results)
    assert [bool(r.scores.get("not_attempted")) for r in run.results] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert run.metrics["latency_ms"] is None and run.metrics["tokens_per_s"] is None
    good = evaluate_provider(
        store, CallableProvider(lambda m: '{"a": 1}', name="good"), examples, task="t", label="good"
    )
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(comparison_table([good, run]))
    row = next(line for line in buffer.getvalue().splitlines() if "broken" in line)
    assert "error" in row and "0%" not in row  # a crash is not "0 % valid"
    assert run_errors([good, run]) == [
        "broken: 5 of 5 examples failed; first error: OSError: no model weights in /missing"
    ]


def test_later_failures_do_not_stop_the_run(store: Store) -> None:
    def flaky(messages: list[dict[str, Any]]) -> str:
        if messages[-1]["content"] == "p1":
            raise RuntimeError("timeout")
        return "ok"

    run = evaluate_provider(
        store,
        CallableProvider(flaky, name="flaky"),
        [ex(f"p{i}", "ok") for i in range(3)],
        task="t",
        label="flaky",
    )
    assert run.metrics["errors"] == 1 and run.metrics["exact_match_rate"] == pytest.approx(
        2 / 3, abs=1e-4
    )
    assert "timeout" in run.metrics["first_error"]


def test_attach_metadata_reads_interactions(store: Store) -> None:
    with store.session() as session:
        session.add(
            Interaction(
                id="i1",
                task="t",
                messages=[],
                response="",
                metadata_={"wording": "new"},
                tags=["x"],
            )
        )
    examples = [
        {"messages": [], "interaction_id": "i1"},
        {"messages": []},
        {"messages": [], "interaction_id": "i1", "metadata": {"wording": "kept"}},
    ]
    enriched = attach_metadata(store, examples)
    assert enriched[0]["metadata"] == {"wording": "new"} and enriched[0]["tags"] == ["x"]
    assert "metadata" not in enriched[1] and enriched[2]["metadata"] == {"wording": "kept"}
    assert "metadata" not in examples[0]  # the caller's examples are not changed


def test_cli_eval_exits_non_zero_naming_the_first_error(tmp_path: Path) -> None:
    from tuneloop.config import load_config
    from tuneloop.curate.build import build_dataset

    config_path = tmp_path / "tuneloop.toml"
    config_path.write_text(
        f'workspace = "{tmp_path.as_posix()}/ws"\ntask = "t"\n'
        "[curate]\nmin_reward = -1.0\nmin_quality = 0\n"
    )
    config = load_config(config_path, environ={})
    store = Store(config.store_url)
    with store.session() as session:
        for i in range(12):
            session.add(
                Interaction(
                    task="t",
                    messages=[{"role": "user", "content": f"p{i}"}],
                    response=json.dumps({"i": i}),
                    reward=1.0,
                    quality=8,
                    metadata_={"wording": "seen" if i % 2 else "new"},
                )
            )
    build_dataset(store, config, task="t")
    store.close()
    command = [sys.executable, "-m", "tuneloop.cli.app", "eval", "--config", str(config_path)]
    crashed = subprocess.run([*command, "callable:json:loads"], capture_output=True, text=True)
    assert crashed.returncode == 1
    assert "callable:json:loads: " in crashed.stderr and "first error" in crashed.stderr
    assert "TypeError" in crashed.stderr and "Traceback" not in crashed.stderr
    fine = subprocess.run(
        [*command, "callable:json:dumps", "--by", "wording"], capture_output=True, text=True
    )
    assert fine.returncode == 0, fine.stderr
    assert "by wording" in fine.stdout
