"""Keeping an interaction's derived columns (reward, quality, corrected_response) in step with its
feedback, so curation filters rows with one indexed query instead of re-reading every event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from tuneloop.capture.quality import quality_score, structurally_valid
from tuneloop.capture.rewards import EDIT_KINDS, aggregate_reward
from tuneloop.jsontext import expects_json, is_valid_json
from tuneloop.store import Feedback, Interaction


def same(column: Any, value: Any) -> ColumnElement[bool]:
    """``column = value`` that also matches NULL to None."""
    return column.is_(None) if value is None else column == value


def next_in_session(session: Session, interaction: Interaction) -> Interaction | None:
    """The interaction right after this one in its session (same tenant), if any."""
    if interaction.session_id is None:
        return None
    return session.scalar(
        select(Interaction)
        .where(
            Interaction.session_id == interaction.session_id,
            same(Interaction.tenant, interaction.tenant),
            Interaction.created_at > interaction.created_at,
        )
        .order_by(Interaction.created_at, Interaction.id)
        .limit(1)
    )


def continued(session: Session, interaction: Interaction) -> bool:
    """The user went on: the next call of the session asks something new.

    Asking the same prompt again is a regenerate, a sign of dissatisfaction, not engagement.
    """
    following = next_in_session(session, interaction)
    return following is not None and following.prompt_hash != interaction.prompt_hash


Event = tuple[str, dict[str, Any], float]  # kind, value, reward; oldest first


def stored_events(session: Session, interaction_id: str) -> list[Event]:
    """The interaction's feedback as stored (pending rows of this session included)."""
    rows = session.execute(
        select(Feedback.kind, Feedback.value, Feedback.reward)
        .where(Feedback.interaction_id == interaction_id)
        .order_by(Feedback.created_at, Feedback.id)
    ).all()
    return [(kind, value, reward) for kind, value, reward in rows]


def apply_scores(interaction: Interaction, events: list[Event], follows: bool) -> None:
    """Set reward, quality and corrected_response from the events and "conversation continued"."""
    interaction.reward = aggregate_reward([(kind, reward) for kind, _, reward in events])
    edits = [value.get("edited") for kind, value, _ in events if kind in EDIT_KINDS]
    interaction.corrected_response = edits[-1] if edits else None
    # Structure is judged on the text training would use: the user's edit when there is one.
    if interaction.corrected_response is not None:
        valid = structurally_valid(
            interaction.corrected_response,
            is_valid_json(interaction.corrected_response)
            if expects_json(interaction.corrected_response)
            else None,
        )
    else:
        valid = structurally_valid(interaction.response, interaction.valid_json)
    interaction.quality = quality_score(
        valid=valid,
        events=[(kind, value) for kind, value, _ in events],
        continued=follows,
    )


def rescore(session: Session, interaction: Interaction) -> None:
    """Recompute the derived columns from what is stored."""
    apply_scores(
        interaction, stored_events(session, interaction.id), continued(session, interaction)
    )
