"""Means with bootstrap 95 % intervals, and breakdowns of per-example scores by a metadata key.

A rate over 24 examples moves by ±0.2 between two runs of the same model; a number without its
interval invites promoting a model on noise. Every aggregate here carries one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BOOTSTRAP_ROUNDS = 1000
CONFIDENCE = 0.95
# Past this many values a running mean stops keeping them and gives the normal interval, which
# is what the bootstrap interval of a mean converges to (and costs nothing to compute).
EXACT_BOOTSTRAP_MAX = 20_000
CONFIDENCE_Z = 1.959964  # the normal quantile of a two-sided 95 % interval


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


def bootstrap_counts(
    values: Sequence[float],
    counts: Sequence[int],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """``bootstrap_mean`` of a sample given as distinct values and how often each occurs.

    A database can count values with GROUP BY and hand over a few rows instead of millions;
    resampling n values from this histogram (a multinomial draw) is the same bootstrap as
    resampling the n values themselves. A rate is ``values=[0, 1]``, ``counts=[n - k, k]``.
    """
    import numpy as np

    weights = np.array([int(c) for c in counts], dtype=np.int64)
    points = np.array([float(v) for v in values], dtype=float)
    n = int(weights.sum())
    if n == 0:
        return Estimate(0, None, None, None)
    mean = float(points @ weights / n)
    if n == 1:
        return Estimate(1, _round(mean), _round(mean), _round(mean))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, weights / n, size=rounds)
    means = draws @ points / n
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(n, _round(mean), _round(float(low)), _round(float(high)))


def bootstrap_rate(successes: int, n: int, *, seed: int = 0) -> Estimate:
    """A rate ``successes / n`` with its bootstrap interval, from the two counts alone."""
    return bootstrap_counts([0.0, 1.0], [n - successes, successes], seed=seed)


def normal_estimate(n: int, mean: float | None, variance: float | None) -> Estimate:
    """The mean with the normal interval ``mean ± z·sqrt(variance / n)``: the limit of the
    bootstrap interval of a mean for large n (``variance`` of the values, divided by n)."""
    if n == 0 or mean is None:
        return Estimate(0, None, None, None)
    half = CONFIDENCE_Z * math.sqrt(max(0.0, variance or 0.0) / n)
    return Estimate(n, _round(mean), _round(mean - half), _round(mean + half))


class RunningMean:
    """A mean fed one value at a time, for samples too big to hold: the values are kept (and
    bootstrapped) up to ``keep`` of them, after which only Welford's running moments are, and
    the interval is the normal one."""

    def __init__(self, keep: int = EXACT_BOOTSTRAP_MAX) -> None:
        self.keep = keep
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0
        self._values: list[float] | None = []

    def add(self, value: float | bool | None) -> None:
        if value is None:
            return
        number = float(value)
        self.n += 1
        delta = number - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (number - self.mean)
        if self._values is not None:
            self._values.append(number)
            if len(self._values) > self.keep:
                self._values = None

    def estimate(self, seed: int = 0) -> Estimate:
        if self._values is not None:
            return bootstrap_mean(self._values, seed=seed)
        return normal_estimate(self.n, self.mean, self._m2 / self.n)


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
