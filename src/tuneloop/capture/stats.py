"""What has been collected so far: is there enough good data to train on yet?

Everything is aggregated in SQL (no rows are loaded), so it stays fast on a big store.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, select

from tuneloop.config import CurateConfig
from tuneloop.store import Feedback, Interaction, Store

REWARD_BUCKETS = 10  # over [-1, 1], 0.2 wide; the last one includes 1.0


def collection_stats(
    store: Store, task: str | None = None, *, curate: CurateConfig | None = None
) -> dict[str, Any]:
    """Counts by task/source, feedback by kind, reward and quality distributions, and the share
    of interactions that pass the export threshold (quality ≥ ``curate.min_quality`` and
    reward ≥ ``curate.min_reward``)."""
    curate = curate or CurateConfig()
    where = [Interaction.task == task] if task else []

    def grouped(column: Any, query: Any = None) -> dict[str, int]:
        query = query if query is not None else select(column, func.count()).where(*where)
        rows = session.execute(query.group_by(column).order_by(column)).all()
        return {str(key): int(count) for key, count in rows}

    with store.session() as session:
        total = session.scalar(select(func.count()).select_from(Interaction).where(*where)) or 0
        by_task = grouped(Interaction.task)
        by_source = grouped(Interaction.source)
        feedback = grouped(
            Feedback.kind,
            select(Feedback.kind, func.count()).join(Interaction).where(*where),
        )
        reward_count, reward_mean = session.execute(
            select(func.count(Interaction.reward), func.avg(Interaction.reward)).where(*where)
        ).one()
        with_feedback = (
            session.scalar(
                select(func.count(func.distinct(Feedback.interaction_id)))
                .join(Interaction)
                .where(*where)
            )
            or 0
        )
        histogram = _reward_histogram(session, where)
        quality = grouped(
            Interaction.quality,
            select(Interaction.quality, func.count()).where(
                *where, Interaction.quality.is_not(None)
            ),
        )
        json_checked, json_valid, quality_mean, passing = session.execute(
            select(
                func.count(Interaction.valid_json),
                func.coalesce(func.sum(case((Interaction.valid_json.is_(True), 1), else_=0)), 0),
                func.avg(Interaction.quality),
                func.coalesce(
                    func.sum(
                        case(
                            (
                                and_(
                                    Interaction.quality >= curate.min_quality,
                                    Interaction.reward >= curate.min_reward,
                                ),
                                1,
                            ),
                            else_=0,
                        )
                    ),
                    0,
                ),
            ).where(*where)
        ).one()
    return {
        "task": task,
        "interactions": int(total),
        "by_task": by_task,
        "by_source": by_source,
        "feedback": feedback,
        "with_feedback": int(with_feedback),
        "reward": {
            "rated": int(reward_count),
            "unrated": int(total) - int(reward_count),
            "mean": _round(reward_mean),
            "histogram": histogram,
        },
        "quality": {
            "mean": _round(quality_mean),
            "histogram": {str(score): quality.get(str(score), 0) for score in range(11)},
        },
        "valid_json": {
            "checked": int(json_checked),
            "valid": int(json_valid),
            "rate": _round(int(json_valid) / json_checked) if json_checked else None,
        },
        "export": {
            "min_quality": curate.min_quality,
            "min_reward": curate.min_reward,
            "passing": int(passing),
            "share": _round(int(passing) / total) if total else None,
        },
    }


def _reward_histogram(session: Any, where: list[Any]) -> list[dict[str, float | int]]:
    width = 2 / REWARD_BUCKETS
    edges = [round(-1 + width * index, 6) for index in range(REWARD_BUCKETS + 1)]
    columns = []
    for index in range(REWARD_BUCKETS):
        low, high = edges[index], edges[index + 1]
        upper = (
            Interaction.reward <= high if index == REWARD_BUCKETS - 1 else Interaction.reward < high
        )
        columns.append(
            func.coalesce(func.sum(case((and_(Interaction.reward >= low, upper), 1), else_=0)), 0)
        )
    counts = session.execute(select(*columns).where(*where)).one()
    return [
        {"low": edges[index], "high": edges[index + 1], "count": int(counts[index])}
        for index in range(REWARD_BUCKETS)
    ]


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)
