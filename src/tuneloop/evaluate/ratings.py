"""Ratings from pairwise battles, computed the way FastChat's Chatbot Arena computes them.

* Online Elo: battles in order, ``K = 4``, scale 400, base 10, everyone starts at 1000; a tie
  scores half a win.
* Bradley–Terry: the maximum-likelihood ratings of the logistic model
  ``P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400))``, a tie counted as half a win and half a
  loss, ratings centred on 1000 (the average model scores 1000). Unlike online Elo it does not
  depend on the order of the battles.
* Intervals: 95 % percentile bootstrap, resampling the battles (as counts of each distinct
  (model_a, model_b, outcome) row, which is the same distribution) and refitting.
* Ranks respect the intervals: a model's rank is one plus the number of models whose lower
  bound lies above its upper bound, so two models with overlapping intervals can share a rank.

Battles are ``{"model_a", "model_b", "winner"}`` with winner ``model_a`` | ``model_b`` | ``tie``
(FastChat's ``tie (bothbad)`` is read as a tie), so a JSONL export can be recomputed with
FastChat's own script.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tuneloop.errors import InputError

K_FACTOR = 4.0
SCALE = 400.0
BASE = 10.0
INIT_RATING = 1000.0
BOOTSTRAP_ROUNDS = 1000
RIDGE = 1e-4  # keeps the fit finite when one model won every battle (the MLE is then infinite)
WINNERS = ("model_a", "model_b", "tie")

Winner = Literal["model_a", "model_b", "tie"]


@dataclass(frozen=True)
class Battle:
    """One comparison of two models' answers to the same prompt."""

    model_a: str
    model_b: str
    winner: Winner

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Rating:
    """One leaderboard row."""

    model: str
    rating: float  # Bradley–Terry, on the Elo scale
    low: float
    high: float
    rank: int
    elo: float  # online Elo
    battles: int
    wins: int
    losses: int
    ties: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def battle(model_a: str, model_b: str, winner: str) -> Battle:
    """A validated battle; ``tie (bothbad)`` becomes ``tie``."""
    if winner == "tie (bothbad)":
        winner = "tie"
    if winner not in WINNERS:
        raise InputError(f"winner {winner!r} must be one of {', '.join(WINNERS)}")
    if model_a == model_b:
        raise InputError(f"a battle needs two different models, got {model_a!r} twice")
    return Battle(model_a, model_b, winner)  # type: ignore[arg-type]


def online_elo(
    battles: Iterable[Battle],
    *,
    k: float = K_FACTOR,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> dict[str, float]:
    """Elo updated battle by battle, in the given order."""
    ratings: dict[str, float] = {}
    for fight in battles:
        ra = ratings.setdefault(fight.model_a, init)
        rb = ratings.setdefault(fight.model_b, init)
        expected_a = 1 / (1 + base ** ((rb - ra) / scale))
        score_a = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}[fight.winner]
        ratings[fight.model_a] = ra + k * (score_a - expected_a)
        ratings[fight.model_b] = rb + k * ((1 - score_a) - (1 - expected_a))
    return ratings


def bradley_terry(
    battles: Sequence[Battle],
    *,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> dict[str, float]:
    """Maximum-likelihood Bradley–Terry ratings on the Elo scale (mean ``init``)."""
    models, pairs, outcomes, weights = _tabulate(battles)
    if not models:
        return {}
    ratings = _fit(pairs, outcomes, weights, len(models), math.log(base))
    return {m: float(init + scale * r) for m, r in zip(models, ratings, strict=True)}


def bootstrap_bradley_terry(
    battles: Sequence[Battle],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> dict[str, tuple[float, float]]:
    """Each model's 95 % interval (2.5th and 97.5th percentile) over bootstrap refits."""
    import numpy as np

    models, pairs, outcomes, weights = _tabulate(battles)
    if not models:
        return {}
    rng = np.random.default_rng(seed)
    total = int(weights.sum())
    draws = rng.multinomial(total, weights / weights.sum(), size=rounds).astype(float)
    fits = np.array([_fit(pairs, outcomes, draw, len(models), math.log(base)) for draw in draws])
    scaled = init + scale * fits
    low, high = np.percentile(scaled, [2.5, 97.5], axis=0)
    return {m: (float(lo), float(hi)) for m, lo, hi in zip(models, low, high, strict=True)}


def interval_ranks(intervals: Mapping[str, tuple[float, float]]) -> dict[str, int]:
    """1 + the number of models whose lower bound is above this model's upper bound."""
    return {
        model: 1 + sum(1 for other, (low, _) in intervals.items() if other != model and low > high)
        for model, (_, high) in intervals.items()
    }


def leaderboard(
    battles: Sequence[Battle], *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> list[Rating]:
    """Bradley–Terry ratings with intervals, interval-respecting ranks, online Elo and counts;
    best first."""
    battles = list(battles)
    point = bradley_terry(battles)
    intervals = bootstrap_bradley_terry(battles, rounds=rounds, seed=seed)
    ranks = interval_ranks(intervals)
    elo = online_elo(battles)
    counts = {model: [0, 0, 0] for model in point}  # wins, losses, ties
    for fight in battles:
        if fight.winner == "tie":
            counts[fight.model_a][2] += 1
            counts[fight.model_b][2] += 1
        else:
            winner, loser = (
                (fight.model_a, fight.model_b)
                if fight.winner == "model_a"
                else (fight.model_b, fight.model_a)
            )
            counts[winner][0] += 1
            counts[loser][1] += 1
    rows = [
        Rating(
            model=model,
            rating=round(point[model], 2),
            low=round(intervals[model][0], 2),
            high=round(intervals[model][1], 2),
            rank=ranks[model],
            elo=round(elo[model], 2),
            battles=sum(counts[model]),
            wins=counts[model][0],
            losses=counts[model][1],
            ties=counts[model][2],
        )
        for model in point
    ]
    return sorted(rows, key=lambda row: (row.rank, -row.rating, row.model))


def write_battles(battles: Iterable[Battle], path: Path) -> int:
    """Write battles as JSONL (``model_a``, ``model_b``, ``winner``); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for fight in battles:
            out.write(json.dumps(fight.to_dict()) + "\n")
            count += 1
    return count


def read_battles(path: Path) -> list[Battle]:
    """Battles from JSONL; extra fields (FastChat's ``tstamp``, ``judge``…) are ignored."""
    if not path.is_file():
        raise InputError(f"no battles file at {path}")
    battles = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                battles.append(
                    battle(str(record["model_a"]), str(record["model_b"]), str(record["winner"]))
                )
            except (ValueError, KeyError, TypeError, InputError) as exc:
                reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
                raise InputError(f"{path}:{number}: not a battle ({reason})") from None
    return battles


def _tabulate(battles: Iterable[Battle]) -> tuple[list[str], Any, Any, Any]:
    """(models, pair indices, outcomes, counts) over distinct (a, b, outcome) rows."""
    import numpy as np

    models: dict[str, int] = {}
    counts: dict[tuple[int, int, float], int] = {}
    for fight in battles:
        a = models.setdefault(fight.model_a, len(models))
        b = models.setdefault(fight.model_b, len(models))
        outcome = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}[fight.winner]
        counts[(a, b, outcome)] = counts.get((a, b, outcome), 0) + 1
    keys = sorted(counts)
    pairs = np.array([(a, b) for a, b, _ in keys], dtype=int).reshape(-1, 2)
    outcomes = np.array([o for _, _, o in keys], dtype=float)
    weights = np.array([counts[key] for key in keys], dtype=float)
    return list(models), pairs, outcomes, weights


def _fit(pairs: Any, outcomes: Any, weights: Any, n_models: int, alpha: float) -> Any:
    """Damped Newton on the weighted logistic likelihood; ratings in natural units, mean 0.

    The likelihood only sees differences, so the gradient always sums to zero; solving in the
    zero-sum subspace (the all-ones direction added to the Hessian) keeps the mean at 0, as
    FastChat's L-BFGS started from zeros does.
    """
    import numpy as np

    ratings = np.zeros(n_models)
    if n_models < 2:
        return ratings
    a, b = pairs[:, 0], pairs[:, 1]
    ones = np.ones((n_models, n_models)) / n_models

    def loss_of(r: Any) -> float:
        logits = alpha * (r[a] - r[b])
        # -[o log σ(x) + (1-o) log σ(-x)] without overflow
        nll = weights * (
            np.logaddexp(0, -logits) * outcomes + np.logaddexp(0, logits) * (1 - outcomes)
        )
        return float(nll.sum() + RIDGE / 2 * (r @ r))

    current = loss_of(ratings)
    for _ in range(100):
        probs = 1 / (1 + np.exp(-alpha * (ratings[a] - ratings[b])))
        residual = alpha * (probs - outcomes) * weights
        gradient = np.zeros(n_models)
        np.add.at(gradient, a, residual)
        np.add.at(gradient, b, -residual)
        gradient += RIDGE * ratings
        if np.abs(gradient).max() < 1e-10:
            break
        curvature = alpha**2 * probs * (1 - probs) * weights
        hessian = np.diag(np.full(n_models, RIDGE))
        np.add.at(hessian, (a, a), curvature)
        np.add.at(hessian, (b, b), curvature)
        np.add.at(hessian, (a, b), -curvature)
        np.add.at(hessian, (b, a), -curvature)
        direction = np.linalg.solve(hessian + ones, gradient)
        step = 1.0
        while step > 1e-8:
            candidate = ratings - step * direction
            value = loss_of(candidate)
            if value <= current:
                ratings, current = candidate, value
                break
            step /= 2
        else:
            break
    return ratings - ratings.mean()


def score_battles(
    scores: Mapping[str, Sequence[float | bool | None]], *, margin: float = 0.0
) -> list[Battle]:
    """Battles from per-example scores: on each example, every pair of models whose scores
    are both present meets once; the higher score wins, a difference within ``margin`` ties.

    ``scores`` maps a model to its scores on the same examples in the same order (a
    programmatic judge: the metric decides).
    """
    models = list(scores)
    lengths = {len(values) for values in scores.values()}
    if len(lengths) > 1:
        raise InputError("every model needs a score for the same examples to battle")
    battles = []
    for index in range(lengths.pop() if lengths else 0):
        for i, first in enumerate(models):
            for second in models[i + 1 :]:
                a, b = scores[first][index], scores[second][index]
                if a is None or b is None:
                    continue
                difference = float(a) - float(b)
                winner: Winner = (
                    "tie"
                    if abs(difference) <= margin
                    else "model_a"
                    if difference > 0
                    else "model_b"
                )
                battles.append(Battle(first, second, winner))
    return battles
