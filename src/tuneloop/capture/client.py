"""The Python API an app calls: ``tl = tuneloop.connect(); tl.log(...); tl.thumbs_up(id)``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, overload

from sqlalchemy import exists, select
from sqlalchemy.orm import aliased

from tuneloop.capture.batch import Batch
from tuneloop.capture.forget import ForgetReport, forget_tenant
from tuneloop.capture.records import prepare_log, to_utc
from tuneloop.capture.rewards import RewardCalculator, check_kind
from tuneloop.config import Config, load_config
from tuneloop.errors import InputError
from tuneloop.store import Feedback, Interaction, OptOut, Store
from tuneloop.store.models import utcnow

# Only live traffic can be abandoned: imported and synthetic rows never had a user waiting.
LIVE_SOURCES = ("app", "gateway")


class Tuneloop:
    """Logs calls and feedback to the store; every method is one transaction."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store if store is not None else Store(config.store_url)
        self.rewards = RewardCalculator(config.capture)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Many logs and feedback events in one transaction (all or nothing, and much faster)."""
        with self.store.session() as session:
            yield Batch(session, self.config.capture, self.rewards)

    def log(
        self,
        messages: list[dict[str, Any]],
        response: str,
        *,
        model: str | None = None,
        task: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        tenant: str | None = None,
        session_id: str | None = None,
        provider: str | None = None,
        source: str = "app",
        latency_ms: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cost_usd: float | None = None,
        created_at: datetime | str | None = None,
        id: str | None = None,
    ) -> str | None:
        """Store one model call and return its id, or None when ``tenant`` opted out.

        An opted-out tenant's call is dropped before anything is written. Logging a call that
        is already stored (the same ``id``, or without one the same content and ``created_at``)
        stores nothing and returns the stored call's id, so a retry never duplicates. A repeat
        of the same prompt by the same tenant/session within ``capture.regenerate_window_s``
        adds a ``regenerated`` event to the earlier call.
        """
        with self.batch() as batch:
            return batch.log(
                messages,
                response,
                id=id,
                model=model,
                task=task or self.config.task,
                metadata=metadata,
                tags=tags,
                tenant=tenant,
                session_id=session_id,
                provider=provider,
                source=source,
                latency_ms=latency_ms,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost_usd,
                created_at=created_at,
            )

    def log_many(self, records: Iterable[Mapping[str, Any]]) -> list[str | None]:
        """Log many calls (dicts of ``log()`` arguments) in one transaction; ids in order.

        All records are checked first: one bad record stores nothing.
        """
        prepared = []
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise InputError(f"records[{index}] must be a dict of log() arguments")
            options = {"task": self.config.task, **record}
            try:
                prepared.append(
                    prepare_log(
                        options.pop("messages", None),
                        options.pop("response", None),
                        self.config.capture,
                        **options,
                    )
                )
            except InputError as exc:
                raise InputError(f"records[{index}]: {exc}") from None
        with self.batch() as batch:
            batch.prefetch(prepared)
            return [batch.add(values) for values in prepared]

    @overload
    def feedback(
        self,
        interaction_id: str,
        kind: str,
        *,
        value: Mapping[str, Any] | None = None,
        score: float | None = None,
        edited: str | None = None,
        comment: str | None = None,
    ) -> float: ...

    @overload
    def feedback(
        self,
        interaction_id: str | None,
        kind: str,
        *,
        value: Mapping[str, Any] | None = None,
        score: float | None = None,
        edited: str | None = None,
        comment: str | None = None,
    ) -> float | None: ...

    def feedback(
        self,
        interaction_id: str | None,
        kind: str,
        *,
        value: Mapping[str, Any] | None = None,
        score: float | None = None,
        edited: str | None = None,
        comment: str | None = None,
    ) -> float | None:
        """Record a signal about a logged call and return its reward in [-1, 1].

        Kinds: ``rewards.KINDS``. ``validation`` needs ``score`` in [0, 1]; ``correction`` and
        ``saved_with_edits`` need ``edited`` (the user's version, kept as ``corrected_response``,
        the best training label). The call's aggregate reward and quality are recomputed.

        ``interaction_id`` None (what :meth:`log` returns for an opted-out tenant) is a no-op
        returning None, so ``tl.thumbs_up(tl.log(...))`` is safe whoever the tenant is.
        """
        if interaction_id is None:
            check_kind(kind)
            return None
        with self.batch() as batch:
            return batch.feedback(
                interaction_id, kind, value=value, score=score, edited=edited, comment=comment
            )

    def thumbs_up(self, interaction_id: str | None, comment: str | None = None) -> float | None:
        return self.feedback(interaction_id, "thumbs_up", comment=comment)

    def thumbs_down(self, interaction_id: str | None, comment: str | None = None) -> float | None:
        return self.feedback(interaction_id, "thumbs_down", comment=comment)

    def correct(
        self, interaction_id: str | None, edited: str, comment: str | None = None
    ) -> float | None:
        """The user rewrote the answer; the more they changed, the lower the reward."""
        return self.feedback(interaction_id, "correction", edited=edited, comment=comment)

    def saved(self, interaction_id: str | None, edited: str | None = None) -> float | None:
        """The user kept the answer; with a different ``edited`` text it is saved_with_edits."""
        return self.feedback(interaction_id, "saved", edited=edited)

    def validated(self, interaction_id: str | None, score: float) -> float | None:
        """An automatic check scored the answer in [0, 1] (≥ 0.8 passes)."""
        return self.feedback(interaction_id, "validation", score=score)

    def abandoned(self, interaction_id: str | None) -> float | None:
        return self.feedback(interaction_id, "abandoned")

    def mark_abandoned(
        self, now: datetime | None = None, *, sources: Iterable[str] = LIVE_SOURCES
    ) -> int:
        """Add ``abandoned`` to calls older than ``capture.abandon_after_s`` that got no feedback
        and no later call in their session; returns how many. Run it periodically (cron)."""
        now = to_utc(now or utcnow())
        cutoff = now - timedelta(seconds=self.config.capture.abandon_after_s)
        later = aliased(Interaction)
        query = select(Interaction).where(
            Interaction.created_at < cutoff,
            Interaction.source.in_(list(sources)),
            ~exists().where(Feedback.interaction_id == Interaction.id),
            ~exists().where(
                later.session_id == Interaction.session_id,
                later.tenant.is_not_distinct_from(Interaction.tenant),
                later.created_at > Interaction.created_at,
            ),
        )
        with self.batch() as batch:
            stale = batch.session.scalars(query).all()
            for interaction in stale:
                batch.event(interaction, "abandoned", created_at=now)
        return len(stale)

    def opt_out(self, tenant: str, reason: str | None = None) -> ForgetReport:
        """Stop collecting ``tenant`` and delete everything stored of theirs (see :meth:`forget`).

        The opt-out is recorded first, so nothing of theirs is collected while the deletion
        runs.
        """
        tenant = _check_tenant(tenant)
        with self.store.session() as session:
            entry = session.get(OptOut, tenant)
            if entry is None:
                session.add(OptOut(tenant=tenant, reason=reason))
            elif reason is not None:
                entry.reason = reason
        return forget_tenant(self.store, tenant, workspace=self.config.workspace)

    def forget(self, tenant: str) -> ForgetReport:
        """Delete everything stored of ``tenant`` without opting them out: their interactions,
        feedback and eval results, and their examples in exported dataset files (rewritten, the
        versions marked). The report names the model versions trained on that data."""
        return forget_tenant(self.store, _check_tenant(tenant), workspace=self.config.workspace)

    def opt_in(self, tenant: str) -> bool:
        """Collect ``tenant`` again; False when it was not opted out in the store."""
        tenant = _check_tenant(tenant)
        if tenant in self.config.capture.opted_out_tenants:
            raise InputError(
                f"tenant {tenant!r} is opted out in the config "
                "(capture.opted_out_tenants): remove it there"
            )
        with self.store.session() as session:
            entry = session.get(OptOut, tenant)
            if entry is None:
                return False
            session.delete(entry)
            return True

    def is_opted_out(self, tenant: str) -> bool:
        with self.batch() as batch:
            return tenant in batch.opted_out

    def get(self, interaction_id: str) -> Interaction:
        """One stored interaction (detached, with its feedback loaded)."""
        with self.store.session() as session:
            interaction = session.get(Interaction, interaction_id)
            if interaction is None:
                raise InputError(f"no interaction with id {interaction_id!r} in the store")
            _ = list(interaction.feedback)
            return interaction

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Tuneloop:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _check_tenant(tenant: Any) -> str:
    if not isinstance(tenant, str) or not tenant.strip():
        raise InputError(f"tenant must be non-empty text, got {tenant!r}")
    return tenant


def connect(config: Config | str | Path | None = None) -> Tuneloop:
    """A client for the configured store: ``config`` is a Config, a config file path, or None
    (``$TUNELOOP_CONFIG`` or ``./tuneloop.toml``, defaults when absent)."""
    if not isinstance(config, Config):
        config = load_config(config)
    return Tuneloop(config)
