"""Shadow analysis: how a candidate version answered the same real requests as the model that
served them.

While a version is at stage ``shadow``, the gateway answers a copy of each routed call with it
and stores that answer as an interaction of its own: ``source = "shadow"``,
``metadata.gateway.served_by = "TASK@vN"`` and ``metadata.gateway.shadow_of`` = the served call's
id, which is the served row's idempotency key (unique, indexed). :func:`shadow_pairs` reads the
pairs with one join, every filter in the WHERE clause, streamed in batches, so millions of rows
never sit in memory; :func:`analyse_shadow` folds them into running means:

* agreement: the same text, and the same JSON value (key order, whitespace, fences ignored);
* valid JSON of each side, and the share of candidate answers that passed the task's checks;
* where the user corrected the served answer, that correction is a reference: the similarity
  and exact-match scores, and any suite metric, of both sides against it;
* a pairwise judge (asked in both orders, MT-Bench's rule) on a uniform sample of pairs;
* latency and cost of each side and their paired difference.

Every number carries a bootstrap 95 % interval (the normal one past
``stats.EXACT_BOOTSTRAP_MAX`` values, where the two agree), and the report says in plain words
when there are too few pairs to decide anything.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from tuneloop.errors import InputError, TuneloopError
from tuneloop.evaluate.metrics import compare_json, score_output
from tuneloop.evaluate.runner import MetricFn, Score
from tuneloop.evaluate.stats import Estimate, RunningMean
from tuneloop.store import Interaction, Store

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from tuneloop.evaluate.judges import PairwiseJudge

SHADOW_SOURCE = "shadow"
BATCH_ROWS = 1000
JUDGE_SCORE = {"model_b": 1.0, "tie": 0.5, "model_a": 0.0}  # the candidate is model_b


@dataclass(frozen=True)
class ShadowPair:
    """One request answered by the served model (``primary``) and, in shadow, the candidate."""

    call_id: str
    created_at: datetime
    messages: list[dict[str, Any]]
    metadata: dict[str, Any]
    served_by: str
    primary: str
    candidate: str
    reference: str | None  # the user's correction of the served answer, if any
    primary_latency_ms: float | None
    candidate_latency_ms: float | None
    primary_cost_usd: float | None
    candidate_cost_usd: float | None
    candidate_check: str | None  # "ok" or why the task's checks refused the candidate's answer


def gateway_field(column: Any, key: str) -> ColumnElement[str]:
    """``metadata.gateway.<key>`` of an interaction, as text, in SQL (SQLite and PostgreSQL)."""
    return column[("gateway", key)].as_string()


def candidate_name(store: Store, task: str, candidate: str) -> str:
    """``v3``, ``3``, a stage name or ``TASK@v3`` → ``TASK@v3``, the name the gateway logs; an
    unknown version is an error naming the known ones."""
    from tuneloop.registry import resolve_version

    own, at, version = candidate.rpartition("@")
    if at and own != task:
        raise InputError(f"candidate {candidate!r} is not a version of task {task!r}")
    found = resolve_version(store, task, version if at else candidate)
    return f"{task}@{found.name}"


def shadow_pairs(
    store: Store,
    task: str,
    candidate: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    served_by: str | None = None,
    tenant: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[ShadowPair]:
    """The logged pairs of ``candidate`` (``TASK@vN``), oldest first, read in batches.

    Filters (time window on the shadow answer, the served model, the tenant) are part of the
    query; the shadow side is found by task and source, its served call by its unique key.
    """
    served, shadow = aliased(Interaction), aliased(Interaction)
    query = (
        select(
            served.idempotency_key,
            shadow.created_at,
            served.messages,
            served.metadata_,
            gateway_field(served.metadata_, "served_by"),
            served.response,
            shadow.response,
            served.corrected_response,
            served.latency_ms,
            shadow.latency_ms,
            served.cost_usd,
            shadow.cost_usd,
            gateway_field(shadow.metadata_, "check"),
        )
        .join(served, served.idempotency_key == gateway_field(shadow.metadata_, "shadow_of"))
        .where(
            shadow.task == task,
            shadow.source == SHADOW_SOURCE,
            gateway_field(shadow.metadata_, "served_by") == candidate,
        )
        .order_by(shadow.created_at, shadow.id)
    )
    if since is not None:
        query = query.where(shadow.created_at >= since)
    if until is not None:
        query = query.where(shadow.created_at < until)
    if served_by is not None:
        query = query.where(gateway_field(served.metadata_, "served_by") == served_by)
    if tenant is not None:
        query = query.where(served.tenant == tenant)
    with store.session() as session:
        rows = session.execute(query.execution_options(yield_per=batch_rows))
        for row in rows:
            metadata = {key: value for key, value in (row[3] or {}).items() if key != "gateway"}
            yield ShadowPair(
                call_id=row[0] or "",
                created_at=row[1],
                messages=list(row[2] or []),
                metadata=metadata,
                served_by=row[4] or "(unknown)",
                primary=row[5],
                candidate=row[6],
                reference=row[7],
                primary_latency_ms=row[8],
                candidate_latency_ms=row[9],
                primary_cost_usd=row[10],
                candidate_cost_usd=row[11],
                candidate_check=row[12],
            )


class Paired:
    """One score of both sides and its paired difference (candidate − served)."""

    def __init__(self) -> None:
        self.primary = RunningMean()
        self.candidate = RunningMean()
        self.delta = RunningMean()

    def add(self, primary: float | bool | None, candidate: float | bool | None) -> None:
        self.primary.add(primary)
        self.candidate.add(candidate)
        if primary is not None and candidate is not None:
            self.delta.add(float(candidate) - float(primary))

    def to_dict(self) -> dict[str, Any]:
        return {
            "served": self.primary.estimate().to_dict(),
            "candidate": self.candidate.estimate().to_dict(),
            "delta": self.delta.estimate().to_dict(),
        }


@dataclass
class ShadowReport:
    """What :func:`analyse_shadow` found; ``to_dict()`` is its JSON form."""

    task: str
    candidate: str
    pairs: int = 0
    served_by: Counter[str] = field(default_factory=Counter)
    agreement: dict[str, Estimate] = field(default_factory=dict)
    checks_passed: Estimate | None = None
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    with_reference: int = 0
    judge: dict[str, Any] | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "candidate": self.candidate,
            "pairs": self.pairs,
            "served_by": dict(self.served_by.most_common()),
            "agreement": {name: e.to_dict() for name, e in self.agreement.items()},
            "checks_passed": self.checks_passed.to_dict() if self.checks_passed else None,
            "with_reference": self.with_reference,
            "scores": self.scores,
            "judge": self.judge,
            "cost": self.cost,
            "notes": self.notes,
        }


def analyse_shadow(
    store: Store,
    task: str,
    candidate: str,
    *,
    metrics: Mapping[str, MetricFn] | None = None,
    judge: PairwiseJudge | None = None,
    judge_sample: int = 200,
    weak_below: int = 30,
    since: datetime | None = None,
    until: datetime | None = None,
    served_by: str | None = None,
    tenant: str | None = None,
    seed: int = 0,
) -> ShadowReport:
    """Compare ``candidate`` (``v3`` or ``TASK@v3``) with what served the same requests.

    ``metrics`` are user metrics, ``fn(output, reference, example)``, scored on pairs whose
    served answer the user corrected (the correction is the reference); ``judge`` compares a
    uniform sample of ``judge_sample`` pairs. One pass over the pairs; memory stays bounded.
    """
    name = candidate_name(store, task, candidate)
    report = ShadowReport(task=task, candidate=name)
    exact, same_json, checks = RunningMean(), RunningMean(), RunningMean()
    scores: dict[str, Paired] = {"valid_json": Paired()}
    reference_scores: dict[str, Paired] = {}
    latency, cost = Paired(), Paired()
    rng = random.Random(seed)
    sample: list[ShadowPair] = []
    for pair in shadow_pairs(
        store, task, name, since=since, until=until, served_by=served_by, tenant=tenant
    ):
        report.pairs += 1
        report.served_by[pair.served_by] += 1
        exact.add(pair.primary.strip() == pair.candidate.strip())
        primary_json, candidate_json, same = compare_json(pair.primary, pair.candidate)
        same_json.add(same)
        if pair.candidate_check is not None:
            checks.add(pair.candidate_check == "ok")
        scores["valid_json"].add(primary_json, candidate_json)
        latency.add(pair.primary_latency_ms, pair.candidate_latency_ms)
        cost.add(pair.primary_cost_usd, pair.candidate_cost_usd)
        if pair.reference is not None:
            report.with_reference += 1
            _score_reference(pair, metrics or {}, reference_scores)
        if judge is not None:  # reservoir sampling: every pair equally likely to be judged
            if len(sample) < judge_sample:
                sample.append(pair)
            else:
                slot = rng.randrange(report.pairs)
                if slot < judge_sample:
                    sample[slot] = pair
    report.agreement = {"exact": exact.estimate(), "json_equal": same_json.estimate()}
    report.checks_passed = checks.estimate() if checks.n else None
    report.scores = {
        label: paired.to_dict() for label, paired in {**scores, **reference_scores}.items()
    }
    report.scores["latency_ms"] = latency.to_dict()
    report.cost = cost.to_dict()
    if judge is not None and sample:
        report.judge = _judge(judge, sample)
    report.notes = _notes(report, weak_below)
    return report


def _score_reference(
    pair: ShadowPair, metrics: Mapping[str, MetricFn], into: dict[str, Paired]
) -> None:
    reference = pair.reference
    assert reference is not None
    primary, candidate = (
        score_output(pair.primary, reference),
        score_output(pair.candidate, reference),
    )
    for key in ("similarity", "exact_match"):
        into.setdefault(key, Paired()).add(primary[key], candidate[key])
    example = {"messages": pair.messages, "metadata": pair.metadata}
    for name, metric in metrics.items():
        try:
            values = [
                _value(metric(text, reference, example)) for text in (pair.primary, pair.candidate)
            ]
        except TuneloopError:
            values = [None, None]  # a metric that cannot answer (a judge down) scores neither
        into.setdefault(name, Paired()).add(values[0], values[1])


def _value(score: float | Score | None) -> float | None:
    if isinstance(score, Score):
        return score.value
    return None if score is None else float(score)


def _judge(judge: PairwiseJudge, sample: list[ShadowPair]) -> dict[str, Any]:
    """The candidate's share of wins (a tie counts half) on the sampled pairs."""
    from tuneloop.evaluate.runner import split_reference

    preference = RunningMean()
    verdicts: Counter[str] = Counter()
    errors = 0
    for pair in sample:
        prompt, _ = split_reference(pair.messages)
        try:
            verdict = judge.compare(prompt, pair.primary, pair.candidate, pair.reference)
        except TuneloopError:  # an unreadable verdict, a judge that is down
            errors += 1
            continue
        verdicts[verdict.winner] += 1
        preference.add(JUDGE_SCORE[verdict.winner])
    return {
        "judge": judge.provider.name,
        "candidate_preference": preference.estimate().to_dict(),
        "candidate_wins": verdicts["model_b"],
        "served_wins": verdicts["model_a"],
        "ties": verdicts["tie"],
        "errors": errors,
    }


def _notes(report: ShadowReport, weak_below: int) -> list[str]:
    """Plain words on how much the numbers can be trusted."""
    notes = []
    if report.pairs == 0:
        notes.append(
            f"insufficient data: no shadow answers of {report.candidate} are logged for these "
            "filters (the gateway stores them while the version is at stage shadow)"
        )
        return notes
    if report.pairs < weak_below:
        notes.append(
            f"weak evidence: {report.pairs} pairs, fewer than {weak_below}; the intervals are "
            "wide, so decide nothing on these numbers yet"
        )
    if report.with_reference < weak_below:
        notes.append(
            f"weak evidence on quality against a reference: {report.with_reference} pairs have "
            "a user correction to compare with"
        )
    judged = (report.judge or {}).get("candidate_preference", {}).get("n", 0)
    if report.judge is not None and judged < weak_below:
        notes.append(f"weak evidence from the judge: {judged} pairs judged")
    return notes


def describe_estimate(estimate: Mapping[str, Any], digits: int = 3) -> str:
    """``0.812 [0.774, 0.851] (n=412)``, or ``–`` when there is no value."""
    if estimate.get("mean") is None:
        return "–"
    mean, low, high, n = estimate["mean"], estimate["low"], estimate["high"], estimate["n"]
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] (n={n})"
