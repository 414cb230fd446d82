"""Means with bootstrap 95 % intervals, and breakdowns of per-example scores by a metadata key.

A rate over 24 examples moves by ±0.2 between two runs of the same model; a number without its
interval invites promoting a model on noise. Every aggregate here carries one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BOOTSTRAP_ROUNDS = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values with the bootstrap interval ``[low, high]``."""

    n: int
    mean: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "low": self.low, "high": self.high}


def bootstrap_mean(
    values: Iterable[float | bool | None],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """The mean of the present values and its percentile-bootstrap interval.

    None values (a score that does not apply to an example) are left out. The resampling is
    seeded, so the same scores always give the same interval.
    """
    import numpy as np

    present = np.array([float(v) for v in values if v is not None], dtype=float)
    if present.size == 0:
        return Estimate(0, None, None, None)
    mean = float(present.mean())
    if present.size == 1:
        return Estimate(1, _round(mean), _round(mean), _round(mean))
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, present.size, size=(rounds, present.size))
    means = present[samples].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(int(present.size), _round(mean), _round(float(low)), _round(float(high)))


def group_value(example: Mapping[str, Any], key: str) -> str:
    """The group an example belongs to for ``key``: its ``metadata[key]``, else a top-level
    field of that name, else ``"(none)"``; a ``/`` in ``key`` walks nested metadata."""
    metadata = example.get("metadata")
    for source in (metadata if isinstance(metadata, Mapping) else {}, example):
        node: Any = source
        for part in key.split("/"):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            return str(node)
    return "(none)"


def breakdown(
    rows: Sequence[Any],
    key_of: Callable[[Any], str],
    score_of: Callable[[Any, str], float | bool | None],
    metrics: Sequence[str],
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{group: {metric: {n, mean, low, high}}}`` over ``rows`` grouped by ``key_of(row)``."""
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(key_of(row), []).append(row)
    return {
        group: {
            metric: bootstrap_mean(score_of(row, metric) for row in members).to_dict()
            for metric in metrics
        }
        for group, members in sorted(groups.items())
    }


def _round(value: float) -> float:
    return round(value, 4)
