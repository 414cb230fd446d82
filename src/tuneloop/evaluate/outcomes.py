"""What users did with each model version's answers: thumbs up, corrections, acceptance, reward.

Capture keeps feedback events per interaction and folds them into the interaction's ``reward``;
each interaction records who answered it: ``metadata.gateway.served_by`` (``TASK@vN``, the
fallback provider, …) for calls through the gateway, else its ``model`` column. Two GROUP BY
queries count everything in the database — per interaction, then per version; and a histogram
of rewards per version — so a task with millions of calls sends back a few rows per version.
Shadow answers are left out: no user saw them.

Per version, over its calls that got any feedback (``rated``):

* **thumbs-up rate**: of the calls with a thumbs verdict, those whose latest one is up;
* **correction rate**: calls the user corrected (``correction``, ``saved_with_edits``);
* **acceptance**: calls kept as given: saved or thumbed up, and not corrected, regenerated or
  thumbed down;
* **mean reward**: capture's reward of the rated calls, in [-1, 1].

Rates carry bootstrap 95 % intervals computed from the counts (a binomial bootstrap is the
bootstrap of 0/1 values); the reward's from its histogram, rounded to 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Numeric, and_, case, cast, func, literal, not_, or_, select

from tuneloop.evaluate.shadow import SHADOW_SOURCE, gateway_field
from tuneloop.evaluate.stats import Estimate, bootstrap_counts, bootstrap_rate
from tuneloop.store import Feedback, Interaction, Store

EDIT_KINDS = ("correction", "saved_with_edits")
REWARD_DIGITS = 3


@dataclass(frozen=True)
class VersionOutcomes:
    """The outcomes of one version's answers (see the module docstring)."""

    version: str
    calls: int
    rated: int
    thumbs_up: Estimate
    corrections: Estimate
    acceptance: Estimate
    reward: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "calls": self.calls,
            "rated": self.rated,
            "thumbs_up_rate": self.thumbs_up.to_dict(),
            "correction_rate": self.corrections.to_dict(),
            "acceptance": self.acceptance.to_dict(),
            "mean_reward": self.reward.to_dict(),
        }


@dataclass
class OutcomesReport:
    task: str
    versions: list[VersionOutcomes] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "versions": [version.to_dict() for version in self.versions],
            "notes": self.notes,
        }


def outcomes_by_version(
    store: Store,
    task: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    weak_below: int = 30,
) -> OutcomesReport:
    """Outcome rates per version of ``task`` (calls in ``[since, until)``), most calls first."""
    version = func.coalesce(
        gateway_field(Interaction.metadata_, "served_by"), Interaction.model, literal("(unknown)")
    )
    where = [Interaction.task == task, Interaction.source != SHADOW_SOURCE]
    if since is not None:
        where.append(Interaction.created_at >= since)
    if until is not None:
        where.append(Interaction.created_at < until)

    def latest(kind: str) -> Any:
        return func.max(case((Feedback.kind == kind, Feedback.created_at)))

    def flag(condition: Any) -> Any:
        return func.max(case((condition, 1), else_=0))

    per_call = (
        select(
            version.label("version"),
            func.count(Feedback.id).label("events"),
            latest("thumbs_up").label("up_at"),
            latest("thumbs_down").label("down_at"),
            flag(Feedback.kind.in_(EDIT_KINDS)).label("edited"),
            flag(Feedback.kind == "saved").label("saved"),
            flag(Feedback.kind == "regenerated").label("regenerated"),
        )
        .select_from(Interaction)
        .outerjoin(Feedback, Feedback.interaction_id == Interaction.id)
        .where(*where)
        .group_by(Interaction.id, version)
        .subquery()
    )
    c = per_call.c
    rated = c.events > 0
    up_wins = and_(c.up_at.is_not(None), or_(c.down_at.is_(None), c.up_at > c.down_at))
    thumbed = or_(c.up_at.is_not(None), c.down_at.is_not(None))
    accepted = and_(
        or_(c.saved == 1, up_wins),
        c.edited == 0,
        c.regenerated == 0,
        not_(and_(c.down_at.is_not(None), not_(up_wins))),
    )

    def count(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    counts_query = select(
        c.version,
        func.count(),
        count(rated),
        count(thumbed),
        count(up_wins),
        count(and_(rated, c.edited == 1)),
        count(and_(rated, accepted)),
    ).group_by(c.version)
    rounded = func.round(cast(Interaction.reward, Numeric), REWARD_DIGITS, type_=Float)
    rewards_query = (
        select(version, rounded, func.count())
        .where(*where, Interaction.reward.is_not(None))
        .group_by(version, rounded)
    )
    with store.session() as session:
        counts = list(session.execute(counts_query))
        histogram: dict[str, tuple[list[float], list[int]]] = {}
        for name, value, times in session.execute(rewards_query):
            values, weights = histogram.setdefault(name, ([], []))
            values.append(float(value))
            weights.append(int(times))
    report = OutcomesReport(task=task)
    for name, calls, rated_n, thumbs, ups, edits, kept in counts:
        rated_n = int(rated_n or 0)
        values, weights = histogram.get(name, ([], []))
        report.versions.append(
            VersionOutcomes(
                version=name,
                calls=int(calls),
                rated=rated_n,
                thumbs_up=bootstrap_rate(int(ups or 0), int(thumbs or 0)),
                corrections=bootstrap_rate(int(edits or 0), rated_n),
                acceptance=bootstrap_rate(int(kept or 0), rated_n),
                reward=bootstrap_counts(values, weights),
            )
        )
    report.versions.sort(key=lambda row: (-row.calls, row.version))
    report.notes = _notes(report, weak_below)
    return report


def _notes(report: OutcomesReport, weak_below: int) -> list[str]:
    if not report.versions:
        return [f"insufficient data: no calls of task {report.task!r} for these filters"]
    return [
        f"weak evidence for {row.version}: {row.rated} of {row.calls} calls have feedback, "
        f"fewer than {weak_below}"
        for row in report.versions
        if row.rated < weak_below
    ]
