"""Promotion gates: clauses over a suite's results that must all hold before a promotion.

A clause compares a value of the candidate with a number or with a value of another model::

    rating.low > baseline.rating               # BT lower bound above the baseline's estimate
    valid_json_rate >= baseline.valid_json_rate
    latency_p95_ms <= baseline.latency_p95_ms * 1.2
    schema_valid >= 0.98
    v2.similarity.low > v1.similarity          # any model label works as a subject

A value is a run metric (``valid_json_rate``, ``similarity``, ``latency_p95_ms``, user metrics,
judge traits…) or ``rating``/``elo`` from the leaderboard; ``.low``/``.high`` take the ends of
its 95 % interval. A value that is missing fails its clause (no evidence is not a pass).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneloop.errors import InputError

_REF = r"(?:(?P<{p}model>[\w.-]+?)\.)?(?P<{p}name>[A-Za-z_]\w*)(?:\.(?P<{p}end>low|high))?"
_CLAUSE = re.compile(
    r"^\s*"
    + _REF.format(p="l")
    + r"\s*(?P<op>>=|<=|==|>|<)\s*(?:(?P<number>-?\d+(?:\.\d+)?)|"
    + _REF.format(p="r")
    + r"(?:\s*(?P<arith>[*+-])\s*(?P<factor>\d+(?:\.\d+)?))?)\s*$"
)
OPERATORS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True)
class ClauseResult:
    clause: str
    passed: bool
    left: float | None
    right: float | None

    def describe(self) -> str:
        def show(value: float | None) -> str:
            return "missing" if value is None else f"{value:g}"

        verdict = "ok" if self.passed else "FAILED"
        return f"{verdict}: {self.clause} ({show(self.left)} vs {show(self.right)})"


@dataclass
class GateResult:
    candidate: str
    baseline: str | None
    clauses: list[ClauseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(clause.passed for clause in self.clauses)

    @property
    def failed(self) -> list[ClauseResult]:
        return [clause for clause in self.clauses if not clause.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "baseline": self.baseline,
            "passed": self.passed,
            "clauses": [
                {"clause": c.clause, "passed": c.passed, "left": c.left, "right": c.right}
                for c in self.clauses
            ],
        }


def check_gate(gate: Any, result: Mapping[str, Any]) -> GateResult:
    """Evaluate ``gate`` (a ``GateSpec``: candidate, baseline, require) on a suite result."""
    outcome = GateResult(gate.candidate, gate.baseline)
    for clause in gate.require:
        outcome.clauses.append(check_clause(clause, result, gate.candidate, gate.baseline))
    return outcome


def check_clause(
    clause: str, result: Mapping[str, Any], candidate: str, baseline: str | None
) -> ClauseResult:
    match = _CLAUSE.match(clause)
    if match is None:
        raise InputError(
            f"gate clause {clause!r} is not of the form 'VALUE OP VALUE' "
            "(e.g. 'valid_json_rate >= baseline.valid_json_rate')"
        )
    parts = match.groupdict()
    for side in ("l", "r"):  # "rating.low" is the candidate's rating, not a model "rating"
        model, name, end = parts[f"{side}model"], parts[f"{side}name"], parts[f"{side}end"]
        if model is not None and end is None and name in ("low", "high"):
            parts[f"{side}model"], parts[f"{side}name"], parts[f"{side}end"] = None, model, name
    left = _value(
        result,
        _subject(parts["lmodel"], candidate, baseline, clause),
        parts["lname"],
        parts["lend"],
    )
    if parts["number"] is not None:
        right: float | None = float(parts["number"])
    else:
        right = _value(
            result,
            _subject(parts["rmodel"], candidate, baseline, clause),
            parts["rname"],
            parts["rend"],
        )
        if right is not None and parts["arith"]:
            factor = float(parts["factor"])
            right = {"*": right * factor, "+": right + factor, "-": right - factor}[parts["arith"]]
    passed = left is not None and right is not None and OPERATORS[parts["op"]](left, right)
    return ClauseResult(clause.strip(), bool(passed), left, right)


def _subject(model: str | None, candidate: str, baseline: str | None, clause: str) -> str:
    if model in (None, "candidate"):
        return candidate
    if model == "baseline":
        if baseline is None:
            raise InputError(
                f"gate clause {clause!r} names the baseline but gate.baseline is unset"
            )
        return baseline
    return model


def _value(result: Mapping[str, Any], model: str, name: str, end: str | None) -> float | None:
    runs = result.get("runs") or {}
    if model not in runs:
        known = ", ".join(runs) or "none"
        raise InputError(f"gate names model {model!r}, which the results do not have ({known})")
    if name in ("rating", "elo"):
        row = next((r for r in result.get("leaderboard") or [] if r["model"] == model), None)
        if row is None:
            return None
        key = {"low": "low", "high": "high"}.get(end or "", name)
        return float(row[key]) if name == "rating" or end is None else None
    metrics = runs[model].get("metrics") or {}
    if end is not None:
        interval = (metrics.get("intervals") or {}).get(name)
        return (
            None
            if not interval or interval[0] is None
            else float(interval[0 if end == "low" else 1])
        )
    value = metrics.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
