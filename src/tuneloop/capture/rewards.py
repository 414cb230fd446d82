"""Reward in [-1, 1] of each feedback event, and the rule folding an interaction's events into one.

The numbers come from ``[capture.rewards]`` (ranges of the adaptive-learning guide); a project with
its own notion of success plugs in ``capture.reward_function`` instead.

Aggregate rule (:func:`aggregate_reward`), in order:

1. An explicit verdict wins: the latest ``thumbs_up``/``thumbs_down`` is the reward. The user said
   what they think; implicit signals only guess it.
2. Otherwise the mean of the other events' rewards, except ``abandoned``: abandonment is inferred
   from silence, so it is ignored as soon as any other signal exists.
3. Only ``abandoned`` events: their reward. No events: None (unrated).
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tuneloop.capture.records import short_name
from tuneloop.config import CaptureConfig, RewardTable
from tuneloop.errors import ConfigError, InputError

if TYPE_CHECKING:
    from tuneloop.store import Interaction

KINDS = (
    "thumbs_up",
    "thumbs_down",
    "correction",
    "saved",
    "saved_with_edits",
    "validation",
    "abandoned",
    "regenerated",
)
EXPLICIT_KINDS = frozenset({"thumbs_up", "thumbs_down"})
EDIT_KINDS = frozenset({"correction", "saved_with_edits"})
# Validation score → reward: ≥ 0.8 is a success (+0.8..+1.0), < 0.6 a failure (-0.3..-1.0).
VALIDATION_POINTS = ((0.0, -1.0), (0.6, -0.3), (0.8, 0.8), (1.0, 1.0))
# Largest len(a) * len(b) diffed directly (SequenceMatcher is quadratic on repetitive text).
DIFF_CELLS = 1_000_000

RewardCallable = Callable[[str, dict[str, Any], "Interaction"], Any]


def check_kind(kind: str) -> str:
    """The kind itself, or an InputError that lists the kinds there are."""
    if kind not in KINDS:
        raise InputError(f"unknown feedback kind {short_name(kind)}; allowed: {', '.join(KINDS)}")
    return kind


def changed_fraction(original: str, edited: str) -> float:
    """How much of the text an edit changed: 0.0 identical … 1.0 nothing in common.

    ``1 - SequenceMatcher.ratio()`` after trimming the common prefix and suffix (edits are
    usually local). Long middles are diffed by words, then by lines, then compared as bags of
    words, so a huge or repetitive answer cannot stall a ``feedback()`` call.
    """
    if original == edited:
        return 0.0
    total = len(original) + len(edited)
    prefix = _common_prefix(original, edited)
    a, b = original[prefix:], edited[prefix:]
    suffix = _common_prefix(a[::-1], b[::-1])
    a, b = a[: len(a) - suffix], b[: len(b) - suffix]
    matched = prefix + suffix + _matched_chars(a, b)
    return min(1.0, max(0.0, 1.0 - 2 * matched / total))


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix (binary search over C-speed slice compares)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _matched_chars(a: str, b: str) -> int:
    """Characters of ``a`` matched in ``b``, by the finest diff that stays fast."""
    if not a or not b:
        return 0
    if len(a) * len(b) <= DIFF_CELLS:
        blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
        return sum(block.size for block in blocks)
    for pattern in (r"\S+|\s+", r"[^\n]*\n|[^\n]+"):
        tokens_a, tokens_b = re.findall(pattern, a), re.findall(pattern, b)
        if len(tokens_a) * len(tokens_b) <= DIFF_CELLS:
            matcher = difflib.SequenceMatcher(None, tokens_a, tokens_b, autojunk=False)
            return sum(
                len("".join(tokens_a[block.a : block.a + block.size]))
                for block in matcher.get_matching_blocks()
            )
    common = Counter(re.findall(r"\S+", a)) & Counter(re.findall(r"\S+", b))
    return sum(len(word) * times for word, times in common.items())


def correction_reward(changed: float, table: RewardTable) -> float:
    """Linear from ``correction_best`` (nothing changed) to ``correction_worst`` (all changed)."""
    return table.correction_best + (table.correction_worst - table.correction_best) * changed


def validation_reward(score: float) -> float:
    """Piecewise-linear map of a validation score in [0, 1] through ``VALIDATION_POINTS``."""
    points = VALIDATION_POINTS
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if score <= x1:
            return y0 + (y1 - y0) * (score - x0) / (x1 - x0)
    return points[-1][1]


def prepare_value(kind: str, value: Mapping[str, Any] | None, response: str) -> dict[str, Any]:
    """Check an event's value for its kind and add what the reward needs (``changed``)."""
    data = dict(value or {})
    if kind in EDIT_KINDS:
        edited = data.get("edited")
        if not isinstance(edited, str):
            raise InputError(f"feedback {kind!r} needs the edited output as text (edited=...)")
        if not edited.strip():
            # A blank edit is a cleared field, not a label: training on it would teach silence.
            raise InputError(f"feedback {kind!r}: the edited output is empty")
        data["changed"] = round(changed_fraction(response, edited), 6)
    if kind == "validation":
        score = data.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise InputError(
                f"feedback 'validation' needs score in [0, 1] (a fraction: 0.85 for 85%), "
                f"got {score!r}"
            )
        data["score"] = float(score)
    return data


def table_reward(kind: str, value: Mapping[str, Any], table: RewardTable) -> float:
    """The reward of a prepared event from the reward table."""
    if kind in EDIT_KINDS:
        return correction_reward(float(value["changed"]), table)
    if kind == "validation":
        return validation_reward(float(value["score"]))
    return float(getattr(table, kind))


class RewardCalculator:
    """Rewards from the table, or from ``capture.reward_function`` (imported on first use)."""

    def __init__(self, capture: CaptureConfig) -> None:
        self.table = capture.rewards
        self.spec = capture.reward_function
        self._function: RewardCallable | None = None

    def _resolve(self) -> RewardCallable:
        if self._function is None:
            from tuneloop.imports import import_object

            assert self.spec is not None
            try:
                function = import_object(self.spec)
            except InputError as exc:
                raise ConfigError(f"capture.reward_function: {exc}") from None
            if not callable(function):
                raise ConfigError(f"capture.reward_function {self.spec!r} is not callable")
            self._function = function
        return self._function

    def __call__(self, kind: str, value: dict[str, Any], interaction: Interaction) -> float:
        """Reward of one prepared event, clamped to [-1, 1]."""
        if self.spec is None:
            return clamp(table_reward(kind, value, self.table))
        function = self._resolve()
        try:
            result = function(kind, value, interaction)
        except Exception as exc:
            raise ConfigError(
                f"capture.reward_function {self.spec!r} raised {type(exc).__name__} "
                f"for kind {kind!r}: {exc}"
            ) from exc
        if isinstance(result, bool) or not isinstance(result, int | float) or math.isnan(result):
            raise ConfigError(
                f"capture.reward_function {self.spec!r} returned {result!r} for kind {kind!r}; "
                "it must return a number in [-1, 1]"
            )
        return clamp(float(result))


def clamp(reward: float) -> float:
    return max(-1.0, min(1.0, reward))


def aggregate_reward(events: Sequence[tuple[str, float]]) -> float | None:
    """One reward from ``(kind, reward)`` events, oldest first (rule: see the module docstring)."""
    explicit = [reward for kind, reward in events if kind in EXPLICIT_KINDS]
    if explicit:
        return explicit[-1]
    implicit = [reward for kind, reward in events if kind != "abandoned"]
    if not implicit:
        implicit = [reward for _, reward in events]
    if not implicit:
        return None
    return clamp(sum(implicit) / len(implicit))
