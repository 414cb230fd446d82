"""One transaction of capture writes: logs and feedback that commit, or roll back, together.

``Tuneloop.log``/``feedback`` each run one; ``log_many`` and the importer put many rows in one,
which is what makes bulk capture fast: one commit, one opt-out lookup, and, after
:meth:`Batch.prefetch`, a few queries per batch instead of per row. Rows created in the batch
are invisible to others until the commit, so their feedback and "conversation continued" are
tracked in memory and the rows are inserted in bulk at the commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from tuneloop.capture import scoring
from tuneloop.capture.records import call_key, feedback_value, parse_time, prepare_log, to_utc
from tuneloop.capture.rewards import RewardCalculator, check_kind, prepare_value
from tuneloop.capture.scoring import Event, apply_scores, same
from tuneloop.config import CaptureConfig
from tuneloop.errors import InputError
from tuneloop.store import Feedback, Interaction, OptOut
from tuneloop.store.models import new_id, utcnow

SessionKey = tuple[str, str | None]  # session_id, tenant
PromptKey = tuple[str, str | None, str | None]  # prompt_hash, tenant, session_id
CHUNK = 500  # values per IN (...) list


class Batch:
    """Capture writes inside one store session (see :meth:`Tuneloop.batch`)."""

    def __init__(self, session: Session, capture: CaptureConfig, rewards: RewardCalculator) -> None:
        self.session = session
        self.capture = capture
        self.rewards = rewards
        self._opted_out: set[str] | None = None
        self._created: dict[str, Interaction] = {}
        self._events: dict[str, list[tuple[datetime, int, Event]]] = {}
        self._follows: dict[str, bool] = {}
        # The latest call of each session and of each (prompt, tenant, session), from prefetch()
        # and from calls added at "now" (newer than anything stored). A key in a "known" set
        # needs no query even when it has no entry: there is none.
        self._latest: dict[SessionKey, Interaction] = {}
        self._known_sessions: set[SessionKey] = set()
        self._recent: dict[PromptKey, Interaction] = {}
        self._known_prompts: set[PromptKey] = set()
        # Idempotency keys → ids: created in this batch or found stored by prefetch(). A key in
        # ``_known_keys`` without an entry is known not to be stored.
        self._keys: dict[str, str] = {}
        self._known_keys: set[str] = set()

    @property
    def opted_out(self) -> set[str]:
        """Tenants never stored: the config list plus the ``opt_outs`` table (read once)."""
        if self._opted_out is None:
            stored = self.session.scalars(select(OptOut.tenant)).all()
            self._opted_out = set(self.capture.opted_out_tenants) | set(stored)
        return self._opted_out

    def log(self, messages: Any, response: Any, **options: Any) -> str | None:
        """Like :meth:`Tuneloop.log`, inside this transaction."""
        return self.add(prepare_log(messages, response, self.capture, **options))

    def add(self, values: Mapping[str, Any]) -> str | None:
        """Store prepared column values (``records.prepare_log``); None for an opted-out tenant.

        A call already stored (same idempotency key) is not stored again: its id is returned.
        """
        return self.put(values)[0]

    def put(self, values: Mapping[str, Any]) -> tuple[str | None, bool]:
        """Like :meth:`add`, and whether a row was created (False: opted out or already there)."""
        tenant = values.get("tenant")
        if tenant is not None and tenant in self.opted_out:
            return None, False
        dated = "created_at" in values  # back-dated: "newest" in the caches may not hold
        row = {"created_at": utcnow(), **values}
        key = row.get("idempotency_key")
        if key is None:
            # No caller id: the call is this content at this moment. Equal content logged at
            # the same microsecond in one batch is still two calls.
            key = call_key(row)
            occurrence = 0
            while key in self._keys:
                occurrence += 1
                key = call_key(row, occurrence)
            if not dated:
                self._known_keys.add(key)  # includes this instant: nothing stored can have it
        existing = self._stored_id(key)
        if existing is not None:
            return existing, False
        return self._create({**row, "idempotency_key": key}, dated=dated), True

    def _stored_id(self, key: str) -> str | None:
        """The id of the row stored under this idempotency key, if any."""
        if key in self._keys or key in self._known_keys:
            return self._keys.get(key)
        found = self.session.scalar(
            select(Interaction.id).where(Interaction.idempotency_key == key)
        )
        self._known_keys.add(key)
        if found is not None:
            self._keys[key] = found
        return found

    def _create(self, values: Mapping[str, Any], *, dated: bool) -> str:
        interaction = Interaction(**values, id=new_id())
        self.session.add(interaction)
        self._keys[values["idempotency_key"]] = interaction.id
        self._created[interaction.id] = interaction
        self._events[interaction.id] = []
        follows = False
        if interaction.tenant is not None or interaction.session_id is not None:
            self._detect_regenerate(interaction, dated)
        if interaction.session_id is not None:
            key = (interaction.session_id, interaction.tenant)
            # A back-dated call newer than every call known for its session (a gateway backlog
            # written in order) is appended like a live one: no lookups.
            if dated and not _appends(self._latest, self._known_sessions, key, interaction):
                self._latest.pop(key, None)
                self._known_sessions.discard(key)
                previous = self._previous_in_session(interaction)
                follows = scoring.continued(self.session, interaction)
            elif key in self._latest or key in self._known_sessions:
                previous = self._latest.get(key)
                self._latest[key] = interaction
            else:
                previous = self._previous_in_session(interaction)
                self._latest[key] = interaction
            if previous is not None:  # this call is its next one: did the user go on?
                self._rescore(previous, previous.prompt_hash != interaction.prompt_hash)
        self._follows[interaction.id] = follows
        apply_scores(interaction, [], follows)
        return interaction.id

    def prefetch(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Load in a few queries what ``add()`` of these prepared rows would look up one by one:
        rows already stored under their idempotency keys, recent calls with the same prompts and
        the latest call of each of their sessions."""
        keys = sorted(
            {row["idempotency_key"] for row in rows if row.get("idempotency_key") is not None}
            - self._known_keys
        )
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            stored = self.session.execute(
                select(Interaction.idempotency_key, Interaction.id).where(
                    Interaction.idempotency_key.in_(chunk)
                )
            )
            self._keys.update({key: interaction_id for key, interaction_id in stored if key})
            self._known_keys.update(chunk)
        live = [  # back-dated rows too: appended in order, they use what is loaded here
            row
            for row in rows
            if (row.get("tenant") is not None or row.get("session_id") is not None)
            and row.get("tenant") not in self.opted_out
        ]
        prompts = {
            (row["prompt_hash"], row.get("tenant"), row.get("session_id")) for row in live
        } - self._known_prompts
        oldest = min(
            (to_utc(row["created_at"]) for row in live if "created_at" in row), default=utcnow()
        )
        since = min(oldest, utcnow()) - timedelta(seconds=self.capture.regenerate_window_s)
        hashes = sorted({prompt for prompt, _, _ in prompts})
        # Only the newest call of each (prompt, tenant, session) of this batch matters: filter by
        # the batch's sessions (or tenants, for calls without a session) and keep the newest in
        # SQL, so a popular prompt asked in many other sessions loads nothing.
        session_ids = sorted({session for _, _, session in prompts if session is not None})
        bare_tenants = sorted(
            {tenant for _, tenant, session in prompts if session is None and tenant is not None}
        )
        scope: list[ColumnElement[bool]] = []
        if session_ids:
            scope.append(Interaction.session_id.in_(session_ids))
        if bare_tenants:
            scope.append(
                and_(Interaction.session_id.is_(None), Interaction.tenant.in_(bare_tenants))
            )
        for start in range(0, len(hashes) if scope else 0, CHUNK):
            newest_call = (
                select(
                    Interaction.prompt_hash,
                    Interaction.tenant,
                    Interaction.session_id,
                    func.max(Interaction.created_at).label("newest"),
                )
                .where(
                    Interaction.prompt_hash.in_(hashes[start : start + CHUNK]),
                    Interaction.created_at >= since,
                    or_(*scope),
                )
                .group_by(Interaction.prompt_hash, Interaction.tenant, Interaction.session_id)
                .subquery()
            )
            found = self.session.scalars(
                select(Interaction)
                .join(
                    newest_call,
                    and_(
                        Interaction.prompt_hash == newest_call.c.prompt_hash,
                        Interaction.tenant.is_not_distinct_from(newest_call.c.tenant),
                        Interaction.session_id.is_not_distinct_from(newest_call.c.session_id),
                        Interaction.created_at == newest_call.c.newest,
                    ),
                )
                .with_for_update(of=Interaction)
            )
            for row in found:
                key = (row.prompt_hash, row.tenant, row.session_id)
                if key in prompts:
                    _keep_latest(self._recent, key, row)
        self._known_prompts |= prompts
        sessions = {
            (row["session_id"], row.get("tenant"))
            for row in live
            if row.get("session_id") is not None
        } - self._known_sessions
        ids = sorted({session_id for session_id, _ in sessions})
        for start in range(0, len(ids), CHUNK):
            newest = (
                select(
                    Interaction.session_id,
                    Interaction.tenant,
                    func.max(Interaction.created_at).label("newest"),
                )
                .where(Interaction.session_id.in_(ids[start : start + CHUNK]))
                .group_by(Interaction.session_id, Interaction.tenant)
                .subquery()
            )
            found = self.session.scalars(
                select(Interaction)
                .join(
                    newest,
                    and_(
                        Interaction.session_id == newest.c.session_id,
                        Interaction.tenant.is_not_distinct_from(newest.c.tenant),
                        Interaction.created_at == newest.c.newest,
                    ),
                )
                .with_for_update(of=Interaction)
            )
            for row in found:
                session_key = (row.session_id, row.tenant)
                if session_key in sessions:
                    _keep_latest(self._latest, session_key, row)
        self._known_sessions |= sessions

    def _detect_regenerate(self, interaction: Interaction, dated: bool) -> None:
        """Same prompt from the same tenant+session within the window: the earlier answer failed.

        Needs a tenant or a session: without either, two identical prompts may come from two
        different users (or be synthetic), which says nothing about the first answer.
        """
        key = (interaction.prompt_hash, interaction.tenant, interaction.session_id)
        since = interaction.created_at - timedelta(seconds=self.capture.regenerate_window_s)
        if dated and _appends(self._recent, self._known_prompts, key, interaction):
            dated = False  # newer than every known call with this prompt: as if live
        if not dated and (key in self._recent or key in self._known_prompts):
            earlier = self._recent.get(key)
            if earlier is not None and to_utc(earlier.created_at) < since:
                earlier = None
        else:
            earlier = self.session.scalar(
                select(Interaction)
                .where(
                    Interaction.prompt_hash == interaction.prompt_hash,
                    same(Interaction.tenant, interaction.tenant),
                    same(Interaction.session_id, interaction.session_id),
                    Interaction.id != interaction.id,
                    Interaction.created_at >= since,
                    Interaction.created_at <= interaction.created_at,
                )
                .order_by(Interaction.created_at.desc())
                .limit(1)
                .with_for_update()
            )
        if dated:
            self._recent.pop(key, None)
            self._known_prompts.discard(key)
        else:
            self._recent[key] = interaction
        if earlier is not None:
            self.event(
                earlier, "regenerated", {"by": interaction.id}, created_at=interaction.created_at
            )

    def _previous_in_session(self, interaction: Interaction) -> Interaction | None:
        return self.session.scalar(
            select(Interaction)
            .where(
                Interaction.session_id == interaction.session_id,
                same(Interaction.tenant, interaction.tenant),
                Interaction.id != interaction.id,
                Interaction.created_at < interaction.created_at,
            )
            .order_by(Interaction.created_at.desc(), Interaction.id.desc())
            .limit(1)
            .with_for_update()
        )

    def _rescore(self, interaction: Interaction, follows: bool | None = None) -> None:
        """Refresh derived columns; rows created in this batch need no query."""
        if interaction.id in self._events:
            events = [
                event
                for *_, event in sorted(self._events[interaction.id], key=lambda item: item[:2])
            ]
        else:
            events = scoring.stored_events(self.session, interaction.id)
        if follows is None:
            follows = self._follows.get(interaction.id)
        if follows is None:
            follows = interaction.session_id is not None and scoring.continued(
                self.session, interaction
            )
        if interaction.id in self._follows:
            self._follows[interaction.id] = follows
        apply_scores(interaction, events, follows)

    def feedback(
        self,
        interaction_id: str,
        kind: str,
        *,
        value: Mapping[str, Any] | None = None,
        score: float | None = None,
        edited: str | None = None,
        comment: str | None = None,
        created_at: datetime | str | None = None,
    ) -> float:
        """Like :meth:`Tuneloop.feedback`, inside this transaction."""
        kind = check_kind(kind)
        data = feedback_value(
            kind, value, score=score, edited=edited, comment=comment, capture=self.capture
        )
        when = (
            parse_time(created_at, "feedback created_at", self.capture.max_future_s)
            if created_at is not None
            else None
        )
        interaction = self._created.get(str(interaction_id)) or self.session.scalar(
            select(Interaction).where(Interaction.id == str(interaction_id)).with_for_update()
        )
        if interaction is None:
            raise InputError(
                f"no interaction with id {interaction_id!r} in the store "
                "(wrong id, or deleted by an opt-out)"
            )
        if kind == "saved" and isinstance(data.get("edited"), str):
            if data["edited"] != interaction.response:
                kind = "saved_with_edits"  # saved, but not as it was: the edit is the label
            else:
                del data["edited"]
        return self.event(interaction, kind, data, comment=comment, created_at=when)

    def event(
        self,
        interaction: Interaction,
        kind: str,
        value: Mapping[str, Any] | None = None,
        *,
        comment: str | None = None,
        created_at: datetime | None = None,
    ) -> float:
        """Store one event on a loaded interaction, refresh its scores, return the event reward."""
        data = prepare_value(kind, value, interaction.response)
        reward = self.rewards(kind, dict(data), interaction)
        when = created_at or utcnow()
        self.session.add(
            Feedback(
                interaction_id=interaction.id,
                kind=kind,
                value=data,
                reward=reward,
                comment=comment,
                created_at=when,
            )
        )
        if interaction.id in self._events:
            events = self._events[interaction.id]
            events.append((to_utc(when), len(events), (kind, data, reward)))
        self._rescore(interaction)
        return reward


def _appends(
    cache: dict[Any, Interaction], known: set[Any], key: Any, interaction: Interaction
) -> bool:
    """Whether ``interaction`` comes strictly after every call under ``key`` that ``cache``
    knows, and the cache is complete for that key (loaded, or created in this batch)."""
    if key not in cache and key not in known:
        return False
    newest = cache.get(key)
    return newest is None or to_utc(newest.created_at) < to_utc(interaction.created_at)


def _keep_latest(cache: dict[Any, Interaction], key: Any, row: Interaction) -> None:
    current = cache.get(key)
    if current is None or (to_utc(row.created_at), row.id) > (
        to_utc(current.created_at),
        current.id,
    ):
        cache[key] = row
