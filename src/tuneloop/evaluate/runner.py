"""Running a provider over evaluation examples and recording every output and score.

All models (base, fine-tuned versions, the teacher) go through the same ``Provider`` interface
and the same scoring, so their ``EvalRun`` rows compare like for like.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tuneloop.evaluate.metrics import score_output
from tuneloop.providers.base import Message, Provider
from tuneloop.store import EvalResult, EvalRun, Store

ProgressCallback = Callable[[int, int], None]
CHARS_PER_TOKEN = 4  # estimate for providers that do not report completion tokens


def split_reference(messages: Sequence[Message]) -> tuple[list[Message], str | None]:
    """(prompt, reference): the final assistant message is the reference, the rest the prompt."""
    prompt = list(messages)
    if prompt and prompt[-1].get("role") == "assistant":
        content = prompt.pop().get("content")
        return prompt, content if isinstance(content, str) else None
    return prompt, None


def evaluate_provider(
    store: Store,
    provider: Provider,
    examples: Sequence[Mapping[str, Any]],
    *,
    task: str,
    label: str,
    dataset_id: int | None = None,
    split: str = "eval",
    model_version_id: int | None = None,
    max_new_tokens: int = 384,
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
) -> EvalRun:
    """Answer every example's prompt with ``provider`` (greedy), score it, store the run.

    ``examples`` are ``{"messages": [...]}`` dicts (``load_split`` output; an optional
    ``interaction_id`` is kept on each result). A provider error on one example is recorded as
    a failed example with the error message (scored as empty output) and the run goes on.
    Results are written in one transaction at the end, so no transaction stays open during
    slow model calls. Providers that can answer a batch at once (``complete_batch``, e.g. local
    models) get ``batch_size`` prompts per call.
    """
    results: list[EvalResult] = []
    total = len(examples)
    step = batch_size if hasattr(provider, "complete_batch") else 1
    for start in range(0, total, step):
        chunk = examples[start : start + step]
        if step > 1:
            results.extend(_run_batch(provider, chunk, max_new_tokens))
        else:
            results.extend(_run_one(provider, example, max_new_tokens) for example in chunk)
        if progress is not None:
            progress(len(results), total)
    with store.session() as session:
        run = EvalRun(
            task=task,
            label=label,
            provider=provider.name,
            model_version_id=model_version_id,
            dataset_id=dataset_id,
            split=split,
            metrics=aggregate(results),
            results=results,
        )
        session.add(run)
        session.flush()
    return run


def _run_one(provider: Provider, example: Mapping[str, Any], max_new_tokens: int) -> EvalResult:
    prompt, _reference = split_reference(example.get("messages") or [])
    started = time.perf_counter()
    try:
        completion = provider.complete(prompt, max_tokens=max_new_tokens, temperature=0.0)
    except Exception as exc:  # one failing call must not lose the rest of the run
        return _failed(example, exc, (time.perf_counter() - started) * 1000)
    return _result(example, completion)


def _run_batch(
    provider: Any, examples: Sequence[Mapping[str, Any]], max_new_tokens: int
) -> list[EvalResult]:
    prompts = [split_reference(example.get("messages") or [])[0] for example in examples]
    started = time.perf_counter()
    try:
        completions = provider.complete_batch(prompts, max_tokens=max_new_tokens, temperature=0.0)
    except Exception as exc:  # the whole batch failed: record it on each example
        elapsed = (time.perf_counter() - started) * 1000
        return [_failed(example, exc, elapsed) for example in examples]
    return [
        _result(example, completion)
        for example, completion in zip(examples, completions, strict=True)
    ]


def _failed(example: Mapping[str, Any], exc: Exception, latency_ms: float) -> EvalResult:
    prompt, reference = split_reference(example.get("messages") or [])
    return EvalResult(
        interaction_id=example.get("interaction_id"),
        prompt=prompt,
        reference=reference,
        output="",
        scores={**score_output("", reference), "error": f"{type(exc).__name__}: {exc}"},
        latency_ms=latency_ms,
        completion_tokens=None,
    )


def _result(example: Mapping[str, Any], completion: Any) -> EvalResult:
    prompt, reference = split_reference(example.get("messages") or [])
    interaction_id = example.get("interaction_id")
    scores = score_output(completion.text, reference)
    if completion.completion_tokens is None:
        scores["tokens_estimated"] = True
    return EvalResult(
        interaction_id=interaction_id,
        prompt=prompt,
        reference=reference,
        output=completion.text,
        scores=scores,
        latency_ms=completion.latency_ms,
        completion_tokens=completion.completion_tokens,
    )


def aggregate(results: Sequence[EvalResult]) -> dict[str, Any]:
    """Run-level metrics. Failed examples count as wrong in the quality rates (a user of the
    app would get no answer) but are left out of latency and throughput.
    """
    ok = [r for r in results if "error" not in r.scores]
    latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
    tokens = [_completion_tokens(r) for r in ok]
    seconds = sum(latencies) / 1000
    return {
        "n": len(results),
        "errors": len(results) - len(ok),
        "valid_json_rate": _mean(r.scores.get("valid_json") for r in results),
        "similarity": _mean(r.scores.get("similarity") for r in results),
        "exact_match_rate": _mean(r.scores.get("exact_match") for r in results),
        "latency_ms": _round(sum(latencies) / len(latencies)) if latencies else None,
        "latency_p95_ms": _round(percentile(latencies, 95)) if latencies else None,
        "completion_tokens": sum(tokens),
        "tokens_per_s": _round(sum(tokens) / seconds) if seconds > 0 else None,
        "tokens_estimated": any(r.completion_tokens is None for r in ok),
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (an observed value, no interpolation)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _completion_tokens(result: EvalResult) -> int:
    if result.completion_tokens is not None:
        return result.completion_tokens
    return math.ceil(len(result.output) / CHARS_PER_TOKEN)


def _mean(values: Any) -> float | None:
    present = [float(v) for v in values if v is not None]
    return _round(sum(present) / len(present)) if present else None


def _round(value: float) -> float:
    return round(value, 4)
