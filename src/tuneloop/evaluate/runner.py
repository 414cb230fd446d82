"""Running a provider over evaluation examples and recording every output and score.

All models (base, fine-tuned versions, the teacher) go through the same ``Provider`` interface
and the same scoring, so their ``EvalRun`` rows compare like for like.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.errors import InputError, TuneloopError
from tuneloop.evaluate.metrics import score_output
from tuneloop.evaluate.stats import bootstrap_mean, breakdown, group_value
from tuneloop.imports import import_object
from tuneloop.providers.base import Message, Provider
from tuneloop.store import EvalResult, EvalRun, Store

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Score:
    """A metric value with the reason for it (a judge's explanation)."""

    value: float
    reason: str = ""


MetricFn = Callable[[str, str | None, Mapping[str, Any]], "float | Score | None"]
"""A user metric: ``fn(output, reference, example) -> score`` (None when it does not apply;
a ``Score`` keeps a reason beside the value). A ``TuneloopError`` from it (a judge that could
not answer) is recorded on the example; any other exception stops the run."""
RESERVED_SCORES = frozenset(
    {
        "valid_json",
        "similarity",
        "similarity_kind",
        "exact_match",
        "reasons",
        "metric_errors",
        "error",
        "groups",
        "batch_size",
        "tokens_estimated",
        "cost_usd",
        "not_attempted",
    }
)
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
    metrics: Mapping[str, MetricFn | str] | None = None,
    group_by: Sequence[str] = (),
    resume_key: str | None = None,
) -> EvalRun:
    """Answer every example's prompt with ``provider`` (greedy), score it, store the run.

    ``examples`` are ``{"messages": [...]}`` dicts (``load_split`` output; an optional
    ``interaction_id`` is kept on each result, an optional ``metadata`` dict feeds
    ``group_by``). ``metrics`` adds user scores, ``name → fn(output, reference, example)`` or a
    ``module:function`` spec; each run-level mean gets a bootstrap interval, and ``group_by``
    keys (``wording``, ``category``, ``a/b`` for nested metadata) break every score down.

    A provider error on one example is recorded as a failed example with the error message
    (scored as empty output) and the run goes on; when the very first call fails the model is
    taken as unable to answer and the remaining examples are marked with that error without
    calling it again (a model that cannot load is loaded once, not once per example). No
    transaction stays open during slow model calls. Providers that can answer a batch at once
    (``complete_batch``, e.g. local models) get ``batch_size`` prompts per call; each answer's
    latency is then the batch's measured wall time (what that request waited), and throughput
    is the batch throughput.

    Results are stored chunk by chunk while the run is ``running``. Given a ``resume_key`` (a
    hash of what makes two runs the same: suite, model, examples, options), an unfinished run
    with that key is continued: examples already answered are not asked again.
    """
    extra = resolve_metrics(metrics or {})
    run_id, done = _open_run(
        store,
        resume_key,
        EvalRun(
            task=task,
            label=label,
            provider=provider.name,
            model_version_id=model_version_id,
            dataset_id=dataset_id,
            split=split,
            metrics={},
            status="running",
            resume_key=resume_key,
        ),
    )
    total = len(examples)
    step = batch_size if hasattr(provider, "complete_batch") else 1
    first_failure: Exception | None = None
    called = False
    todo = [index for index in range(total) if index not in done]
    if progress is not None and done:
        progress(total - len(todo), total)
    for start in range(0, len(todo), step):
        indices = todo[start : start + step]
        chunk = [examples[index] for index in indices]
        if first_failure is not None:
            chunk_results = [
                _failed(example, first_failure, None, not_attempted=True) for example in chunk
            ]
        elif step > 1:
            chunk_results = _run_batch(provider, chunk, max_new_tokens)
        else:
            chunk_results = [_run_one(provider, example, max_new_tokens) for example in chunk]
        if not called and chunk_results and all("error" in r.scores for r in chunk_results):
            first_failure = _FirstFailure(chunk_results[0].scores["error"])
        called = True
        for index, example, result in zip(indices, chunk, chunk_results, strict=True):
            _add_scores(result, example, extra, group_by, index=index)
            result.example_index = index
            result.run_id = run_id
        with store.session() as session:  # each chunk is kept: an interrupted run resumes
            session.add_all(chunk_results)
        if progress is not None:
            progress(total - len(todo) + start + len(indices), total)
    with store.session() as session:
        run = session.get_one(EvalRun, run_id)
        results = list(run.results)
        run.metrics = aggregate(results, metrics=list(extra), group_by=group_by)
        run.status = "complete"
        session.flush()
    return run


def _open_run(store: Store, resume_key: str | None, new: EvalRun) -> tuple[int, set[int]]:
    """(run id, indices of examples already answered): the unfinished run with this
    ``resume_key`` when there is one, else ``new``, stored."""
    from sqlalchemy import select

    with store.session() as session:
        if resume_key is not None:
            found = session.scalars(
                select(EvalRun)
                .where(EvalRun.resume_key == resume_key, EvalRun.status == "running")
                .order_by(EvalRun.id.desc())
                .limit(1)
            ).first()
            if found is not None:
                indices = session.scalars(
                    select(EvalResult.example_index).where(EvalResult.run_id == found.id)
                )
                return found.id, {index for index in indices if index is not None}
        session.add(new)
        session.flush()
        return new.id, set()


class _FirstFailure(Exception):
    """The first call's error, repeated on the examples that were then not attempted."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_metrics(metrics: Mapping[str, MetricFn | str]) -> dict[str, MetricFn]:
    """User metrics by name; ``module:function`` specs are imported (InputError if not found)."""
    resolved: dict[str, MetricFn] = {}
    for name, metric in metrics.items():
        if name in RESERVED_SCORES:
            raise InputError(f"metric name {name!r} is taken by a built-in score; rename it")
        if isinstance(metric, str):
            try:
                metric = import_object(metric)
            except TuneloopError as exc:
                raise InputError(f"metric {name!r}: {exc}") from None
        if not callable(metric):
            raise InputError(f"metric {name!r} is not callable")
        resolved[name] = metric
    return resolved


def _add_scores(
    result: EvalResult,
    example: Mapping[str, Any],
    metrics: Mapping[str, MetricFn],
    group_by: Sequence[str],
    *,
    index: int,
) -> None:
    scores = dict(result.scores)
    failed = "error" in scores
    for name, metric in metrics.items():
        try:
            value = metric(result.output, result.reference, example)
        except TuneloopError as exc:  # a judge that failed on this example: record, go on
            scores.setdefault("metric_errors", {})[name] = str(exc)
            scores[name] = None
            continue
        except Exception as exc:  # a user's metric: name it and the example, never the data
            raise InputError(
                f"metric {name!r} raised {type(exc).__name__} on example {index}"
            ) from exc
        if isinstance(value, Score):
            if value.reason:
                scores.setdefault("reasons", {})[name] = value.reason
            value = value.value
        if value is not None and not isinstance(value, int | float):
            raise InputError(
                f"metric {name!r} returned {type(value).__name__} on example {index}; "
                "expected a number or None"
            )
        scores[name] = 0.0 if failed and value is None else value
    if group_by:
        scores["groups"] = {key: group_value(example, key) for key in group_by}
    result.scores = scores


def _run_one(provider: Provider, example: Mapping[str, Any], max_new_tokens: int) -> EvalResult:
    prompt, _reference = split_reference(example.get("messages") or [])
    started = time.perf_counter()
    try:
        completion = provider.complete(prompt, max_tokens=max_new_tokens, temperature=0.0)
    except Exception as exc:  # one failing call must not lose the rest of the run
        return _failed(example, exc, (time.perf_counter() - started) * 1000)
    return _result(example, completion, completion.latency_ms, batch_size=1)


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
    wall_ms = (time.perf_counter() - started) * 1000
    return [
        _result(example, completion, wall_ms, batch_size=len(examples))
        for example, completion in zip(examples, completions, strict=True)
    ]


def _failed(
    example: Mapping[str, Any],
    exc: Exception,
    latency_ms: float | None,
    *,
    not_attempted: bool = False,
) -> EvalResult:
    prompt, reference = split_reference(example.get("messages") or [])
    error = str(exc) if isinstance(exc, _FirstFailure) else f"{type(exc).__name__}: {exc}"
    scores = {**score_output("", reference), "error": error}
    if not_attempted:
        scores["not_attempted"] = True
    return EvalResult(
        interaction_id=example.get("interaction_id"),
        prompt=prompt,
        reference=reference,
        output="",
        scores=scores,
        latency_ms=latency_ms,
        completion_tokens=None,
    )


def _result(
    example: Mapping[str, Any], completion: Any, latency_ms: float, *, batch_size: int
) -> EvalResult:
    prompt, reference = split_reference(example.get("messages") or [])
    interaction_id = example.get("interaction_id")
    scores = score_output(completion.text, reference)
    scores["batch_size"] = batch_size
    if completion.completion_tokens is None:
        scores["tokens_estimated"] = True
    if completion.cost_usd is not None:
        scores["cost_usd"] = completion.cost_usd
    return EvalResult(
        interaction_id=interaction_id,
        prompt=prompt,
        reference=reference,
        output=completion.text,
        scores=scores,
        latency_ms=latency_ms,
        completion_tokens=completion.completion_tokens,
    )


def aggregate(
    results: Sequence[EvalResult],
    *,
    metrics: Sequence[str] = (),
    group_by: Sequence[str] = (),
) -> dict[str, Any]:
    """Run-level metrics. Failed examples count as wrong in the quality rates (a user of the
    app would get no answer) but are left out of latency and throughput.

    Every quality mean has a bootstrap 95 % interval in ``intervals``; ``breakdown`` holds
    ``{key: {group: {score: {n, mean, low, high}}}}`` for each ``group_by`` key. Latency is
    what each request waited (a batch's wall time for batched providers); ``tokens_per_s`` is
    completion tokens over the summed wall time of the calls, i.e. batch throughput when
    ``batch_size`` > 1.
    """
    ok = [r for r in results if "error" not in r.scores]
    latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
    tokens = [_completion_tokens(r) for r in ok]
    # a batch's wall time is on each of its answers; each counts for its share of the call
    call_seconds = (
        sum(r.latency_ms / r.scores.get("batch_size", 1) for r in ok if r.latency_ms is not None)
        / 1000
    )
    batch_sizes = sorted({int(r.scores.get("batch_size", 1)) for r in ok})
    costs = [r.scores["cost_usd"] for r in ok if r.scores.get("cost_usd") is not None]
    errors = [r for r in results if "error" in r.scores]
    scored = {
        "valid_json_rate": "valid_json",
        "similarity": "similarity",
        "exact_match_rate": "exact_match",
        **{name: name for name in metrics},
    }
    estimates = {
        key: bootstrap_mean(r.scores.get(score) for r in results) for key, score in scored.items()
    }
    summary: dict[str, Any] = {
        "n": len(results),
        "errors": len(errors),
        "first_error": errors[0].scores["error"] if errors else None,
        **{key: estimate.mean for key, estimate in estimates.items()},
        "intervals": {
            key: [estimate.low, estimate.high]
            for key, estimate in estimates.items()
            if estimate.mean is not None
        },
        "latency_ms": _round(sum(latencies) / len(latencies)) if latencies else None,
        "latency_p50_ms": _round(percentile(latencies, 50)) if latencies else None,
        "latency_p95_ms": _round(percentile(latencies, 95)) if latencies else None,
        "batch_size": max(batch_sizes) if batch_sizes else None,
        "completion_tokens": sum(tokens),
        "tokens_per_s": _round(sum(tokens) / call_seconds) if call_seconds > 0 else None,
        "tokens_estimated": any(r.completion_tokens is None for r in ok),
        "cost_usd": round(sum(costs), 6) if costs else None,
        "metrics": list(metrics),
    }
    if group_by:
        summary["breakdown"] = {
            key: breakdown(results, _group_of(key), _score_of, list(scored.values()))
            for key in group_by
        }
    return summary


def _group_of(key: str) -> Callable[[EvalResult], str]:
    def group(result: EvalResult) -> str:
        return str(result.scores.get("groups", {}).get(key, "(none)"))

    return group


def _score_of(result: EvalResult, score: str) -> Any:
    return result.scores.get(score)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (an observed value, no interpolation)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _completion_tokens(result: EvalResult) -> int:
    if result.completion_tokens is not None:
        return result.completion_tokens
    return math.ceil(len(result.output) / CHARS_PER_TOKEN)


def _round(value: float) -> float:
    return round(value, 4)


def attach_metadata(store: Store, examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The examples with each one's interaction ``metadata`` (and ``tags``) from the store.

    Exported dataset files hold only messages; ``group_by`` keys such as ``category`` or
    ``wording`` live on the captured interaction. Examples that already carry ``metadata``, or
    have no ``interaction_id``, are kept as they are. One query per 500 ids.
    """
    from sqlalchemy import select

    from tuneloop.store import Interaction

    wanted = [
        e["interaction_id"] for e in examples if e.get("interaction_id") and "metadata" not in e
    ]
    found: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    with store.session() as session:
        for start in range(0, len(wanted), 500):
            query = select(Interaction.id, Interaction.metadata_, Interaction.tags).where(
                Interaction.id.in_(wanted[start : start + 500])
            )
            for row_id, metadata, tags in session.execute(query):
                found[row_id] = (metadata or {}, tags or [])
    enriched = []
    for example in examples:
        record = dict(example)
        if "metadata" not in record and record.get("interaction_id") in found:
            record["metadata"], record["tags"] = found[record["interaction_id"]]
        enriched.append(record)
    return enriched
