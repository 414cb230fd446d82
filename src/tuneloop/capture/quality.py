"""Quality score 0–10 of an interaction, after the training-strategy document.

Points: +3 structurally valid, +3 explicit positive (thumbs up), +2 accepted as-is (``saved``) or
+1 accepted with edits (``saved_with_edits``/``correction``), +1 conversation continued, +1
validation score ≥ 0.8. Only examples scoring ≥ ``curate.min_quality`` (5) are exported.

A thumbs down caps the score at 2: an answer the user explicitly rejected must never reach the
export threshold on structure and implicit signals alone (valid JSON + continued + validation is 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneloop.jsontext import expects_json, is_valid_json

MAX_QUALITY = 10
THUMBS_DOWN_CAP = 2
VALIDATION_PASS = 0.8
OUTCOME_POINTS = {"saved": 2, "saved_with_edits": 1, "correction": 1}


def json_validity(response: str, metadata: Mapping[str, Any] | None = None) -> bool | None:
    """True/False when the answer is meant to be JSON (see ``expects_json``), else None."""
    if not expects_json(response, metadata):
        return None
    return is_valid_json(response)


def structurally_valid(response: str, valid_json: bool | None) -> bool:
    """JSON answers must parse; any other answer passes when it is not empty."""
    if valid_json is not None:
        return valid_json
    return bool(response.strip())


def quality_score(
    *, valid: bool, events: Sequence[tuple[str, Mapping[str, Any]]], continued: bool
) -> int:
    """Score from structure, ``(kind, value)`` events oldest first, and whether the chat went on.

    When signals of one family repeat, the latest counts (a user may change their mind).
    """
    thumbs = [kind for kind, _ in events if kind in ("thumbs_up", "thumbs_down")]
    outcomes = [kind for kind, _ in events if kind in OUTCOME_POINTS]
    scores = [value.get("score") for kind, value in events if kind == "validation"]
    score = 3 if valid else 0
    if thumbs and thumbs[-1] == "thumbs_up":
        score += 3
    if outcomes:
        score += OUTCOME_POINTS[outcomes[-1]]
    if continued:
        score += 1
    if scores and isinstance(scores[-1], int | float) and scores[-1] >= VALIDATION_PASS:
        score += 1
    score = min(score, MAX_QUALITY)
    if thumbs and thumbs[-1] == "thumbs_down":
        score = min(score, THUMBS_DOWN_CAP)
    return score
