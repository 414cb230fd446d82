"""Stage changes: promote, roll back, the audit log, and the version serving a task now.

Every change is one transaction that first takes the task's write lock (``SELECT … FOR UPDATE``
on the task's versions on PostgreSQL; the database write lock on SQLite), so two processes
promoting at once are serialised: the second sees the first's production version and archives
it. A partial unique index (one ``production`` row per task) backs this up in the database
itself. Each change writes a ``stage_changes`` row: who, when, why, and the eval run behind it.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from tuneloop.errors import InputError, StoreError
from tuneloop.registry.versions import Stage, resolve_version, servable
from tuneloop.store import ModelVersion, StageChange, Store

LADDER = (Stage.CANDIDATE, Stage.SHADOW, Stage.CANARY, Stage.PRODUCTION)
ATTEMPTS = 5


@dataclass(frozen=True)
class HistoryEntry:
    """One stage change of the audit log."""

    when: datetime
    version: str
    from_stage: str
    to_stage: str
    traffic_percent: float
    actor: str
    reason: str | None
    eval_run_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "when": self.when.isoformat(timespec="seconds")}


def default_actor() -> str:
    """Who is making the change, for the audit log: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def current(store: Store, task: str) -> ModelVersion | None:
    """The version serving ``task`` in production now, or None."""
    with store.session() as session:
        return session.scalars(
            select(ModelVersion).where(
                ModelVersion.task == task, ModelVersion.stage == Stage.PRODUCTION
            )
        ).first()


def promote(
    store: Store,
    task: str,
    version: str | int,
    *,
    to: str | None = None,
    share: float | None = None,
    actor: str | None = None,
    reason: str | None = None,
    eval_run_id: int | None = None,
) -> ModelVersion:
    """Move a version to ``to`` (default: the next stage of candidate → shadow → canary →
    production). A canary needs ``share``, the percent of traffic it gets; a new production
    version archives the previous one, a new canary the previous canary."""
    target = _stage(to) if to is not None else None
    if share is not None and not 0 < share < 100:
        raise InputError(f"a canary share must be between 0 and 100 percent, got {share:g}")
    if share is not None and target not in (None, Stage.CANARY):
        raise InputError("--share is the traffic of a canary; it applies to --to canary only")
    version_id = resolve_version(store, task, version).id
    return _change(
        store, task, version_id, target, share, actor or default_actor(), reason, eval_run_id
    )


def rollback(
    store: Store, task: str, *, actor: str | None = None, reason: str | None = None
) -> ModelVersion:
    """Put the previous production version back in production (the current one is archived)."""
    with store.session() as session:
        now = session.scalars(
            select(ModelVersion.id).where(
                ModelVersion.task == task, ModelVersion.stage == Stage.PRODUCTION
            )
        ).first()
        earlier = session.scalars(
            select(StageChange.model_version_id)
            .where(StageChange.task == task, StageChange.to_stage == Stage.PRODUCTION)
            .order_by(StageChange.id.desc())
        )
        previous = next((vid for vid in earlier if vid != now), None)
    if previous is None:
        raise InputError(f"task {task!r} has no earlier production version to roll back to")
    return _change(
        store,
        task,
        previous,
        Stage.PRODUCTION,
        None,
        actor or default_actor(),
        reason or "rollback",
        None,
    )


def history(store: Store, task: str) -> list[HistoryEntry]:
    """Every stage change of ``task``, oldest first."""
    with store.session() as session:
        rows = session.execute(
            select(StageChange, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == StageChange.model_version_id)
            .where(StageChange.task == task)
            .order_by(StageChange.id)
        )
        return [
            HistoryEntry(
                change.created_at,
                f"v{number}",
                change.from_stage,
                change.to_stage,
                change.traffic_percent,
                change.actor,
                change.reason,
                change.eval_run_id,
            )
            for change, number in rows
        ]


def _stage(name: str) -> Stage:
    try:
        return Stage(name)
    except ValueError:
        raise InputError(
            f"unknown stage {name!r}; allowed: {', '.join(s.value for s in Stage)}"
        ) from None


def _change(
    store: Store,
    task: str,
    version_id: int,
    target: Stage | None,
    share: float | None,
    actor: str,
    reason: str | None,
    eval_run_id: int | None,
) -> ModelVersion:
    last_error: Exception | None = None
    for _attempt in range(ATTEMPTS):
        try:
            with store.session() as session:
                _lock_task(session, task)
                row = session.get_one(ModelVersion, version_id, populate_existing=True)
                _apply(session, row, target, share, actor, reason, eval_run_id)
            return row
        except (IntegrityError, OperationalError, StoreError) as exc:
            last_error = exc  # lost a race with another writer: retry on the new state
    raise StoreError(f"could not change the stage of {task} (conflicting writers): {last_error}")


def _lock_task(session: Session, task: str) -> None:
    """Serialise stage changes of one task across processes."""
    if session.get_bind().dialect.name == "sqlite":
        # a write as the transaction's first statement takes SQLite's write lock now, so a
        # concurrent changer waits (busy timeout) instead of reading a state about to change
        session.execute(update(ModelVersion).where(ModelVersion.id == -1).values(stage="x"))
        return
    session.execute(select(ModelVersion.id).where(ModelVersion.task == task).with_for_update())


def _apply(
    session: Session,
    row: ModelVersion,
    target: Stage | None,
    share: float | None,
    actor: str,
    reason: str | None,
    eval_run_id: int | None,
) -> None:
    before = Stage(row.stage)
    if target is None:
        if before not in LADDER or before == Stage.PRODUCTION:
            raise InputError(f"{row.task}@{row.name} is {before}; name the stage with --to")
        target = LADDER[LADDER.index(before) + 1]
    if target == Stage.CANARY and share is None:
        raise InputError("a canary needs its share of traffic (--share PERCENT)")
    traffic = {Stage.PRODUCTION: 100.0, Stage.CANARY: share or 0.0}.get(target, 0.0)
    if before == target and row.traffic_percent == traffic:
        raise InputError(f"{row.task}@{row.name} is already {target}")
    if target == Stage.PRODUCTION and not servable(row):
        raise InputError(
            f"{row.task}@{row.name} has no weights at {row.artifact_path}; "
            "it cannot serve production"
        )
    if target in (Stage.PRODUCTION, Stage.CANARY):
        replaced = session.scalars(
            select(ModelVersion).where(
                ModelVersion.task == row.task,
                ModelVersion.stage == target,
                ModelVersion.id != row.id,
            )
        )
        for other in replaced:
            _record(
                session,
                other,
                Stage.ARCHIVED,
                0.0,
                actor,
                f"replaced by {row.name}" + (f": {reason}" if reason else ""),
                eval_run_id,
            )
        session.flush()  # the old production is archived before the new one takes its place
    _record(session, row, target, traffic, actor, reason, eval_run_id)


def _record(
    session: Session,
    row: ModelVersion,
    stage: Stage,
    traffic: float,
    actor: str,
    reason: str | None,
    eval_run_id: int | None,
) -> None:
    session.add(
        StageChange(
            task=row.task,
            model_version_id=row.id,
            from_stage=row.stage,
            to_stage=stage,
            traffic_percent=traffic,
            actor=actor[:200],
            reason=reason,
            eval_run_id=eval_run_id,
        )
    )
    row.stage, row.traffic_percent = stage.value, traffic
