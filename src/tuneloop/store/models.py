"""The store's tables: every stage reads and writes these, never another stage's internals.

Changing a table means adding an Alembic migration in ``store/migrations/versions`` (the
``test_migrations_match_models`` test fails otherwise).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar = {dict[str, Any]: JSONType, list[Any]: JSONType}


class Interaction(Base):
    """One model call: what was asked, what came back, who asked, and what it cost."""

    __tablename__ = "interactions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    task: Mapped[str] = mapped_column(String(200), default="default")
    source: Mapped[str] = mapped_column(String(20), default="app")  # app|gateway|synthetic|import
    messages: Mapped[list[Any]] = mapped_column(default=list)
    response: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(200))
    tenant: Mapped[str | None] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    prompt_hash: Mapped[str] = mapped_column(String(64), default="")
    # The caller's id for the call, or a content hash of it: logging or importing the same call
    # again finds this row instead of adding a second one.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    # Derived from feedback by capture, kept on the row so curation is one indexed query.
    reward: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[int | None] = mapped_column(Integer)
    valid_json: Mapped[bool | None] = mapped_column(Boolean)
    corrected_response: Mapped[str | None] = mapped_column(Text)

    feedback: Mapped[list[Feedback]] = relationship(
        back_populates="interaction", cascade="all, delete-orphan", order_by="Feedback.created_at"
    )

    __table_args__ = (
        Index(None, "task", "created_at"),
        Index(None, "prompt_hash"),
        Index(None, "tenant"),
        Index(None, "session_id", "created_at"),
        Index(None, "idempotency_key", unique=True),
    )


class Feedback(Base):
    """A signal about an interaction: explicit (thumbs), implicit (saved, abandoned) or computed."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    interaction_id: Mapped[str] = mapped_column(
        ForeignKey("interactions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reward: Mapped[float] = mapped_column(Float)
    comment: Mapped[str | None] = mapped_column(Text)

    interaction: Mapped[Interaction] = relationship(back_populates="feedback")


class OptOut(Base):
    """A tenant that asked not to be collected; capture drops its calls before they are stored."""

    __tablename__ = "opt_outs"

    tenant: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)


class Dataset(Base):
    """An immutable dataset version: which examples, which filters, and a hash of the content."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    content_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set when rows were removed from this version after it was built (a tenant's deletion
    # request): its files were rewritten, and models trained on it still saw those rows.
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    examples: Mapped[list[DatasetExample]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan"
    )

    __table_args__ = (UniqueConstraint("name", "version"),)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


class DatasetExample(Base):
    """Membership of an interaction in a dataset version, with its split."""

    __tablename__ = "dataset_examples"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    interaction_id: Mapped[str] = mapped_column(
        ForeignKey("interactions.id", ondelete="CASCADE"), primary_key=True
    )
    split: Mapped[str] = mapped_column(String(20))

    dataset: Mapped[Dataset] = relationship(back_populates="examples")


class JobStatus(StrEnum):
    """Where a job is in its life; every status but queued and running is final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # asked to stop (``jobs cancel``, SIGTERM, Ctrl-C) and stopped
    INTERRUPTED = "interrupted"  # stopped by a signal before it could finish a step
    STALE = "stale"  # its process died without a word: no heartbeat for too long


class JobEventKind(StrEnum):
    """What a job event records."""

    METRIC = "metric"  # loss, learning rate, throughput at a step
    LOG = "log"  # a human-readable line
    PROGRESS = "progress"  # done / total, ETA


class Job(Base):
    """A unit of long-running work (training, evaluation) with a status others can watch."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))  # train | evaluate | curate | synth
    backend: Mapped[str] = mapped_column(String(40), default="local")
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    task: Mapped[str] = mapped_column(String(200), default="default")
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # Refreshed by the running process; a running job whose heartbeat is old has died.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(200))
    # Set by ``jobs cancel``; the running process stops at its next step.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobEvent.id"
    )


class JobEvent(Base):
    """A progress record of a job: loss at a step, a log line, an ETA."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(20))  # a JobEventKind
    step: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    job: Mapped[Job] = relationship(back_populates="events")


class ModelVersion(Base):
    """A trained model of a task (v1, v2, ...) with its lineage and its routing stage."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    base_model: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    backend: Mapped[str] = mapped_column(String(40), default="local")
    artifact_path: Mapped[str | None] = mapped_column(Text)
    remote_id: Mapped[str | None] = mapped_column(String(300))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stage: Mapped[str] = mapped_column(String(20), default="candidate")
    traffic_percent: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        UniqueConstraint("task", "version"),
        # at most one production version per task, whatever the writers do concurrently
        Index(
            "uq_model_versions_task_production",
            "task",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
    )

    @property
    def name(self) -> str:
        return f"v{self.version}"


class EvalRun(Base):
    """One model evaluated on one dataset split, with aggregate metrics."""

    __tablename__ = "eval_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    task: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200))  # "base", "v1", "teacher", ...
    provider: Mapped[str] = mapped_column(Text)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    split: Mapped[str] = mapped_column(String(20), default="eval")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # running while examples are still being answered; an interrupted run resumes from its
    # stored results when the same suite, model and examples are run again
    status: Mapped[str] = mapped_column(String(20), default="complete", server_default="complete")
    resume_key: Mapped[str | None] = mapped_column(String(64), index=True)

    results: Mapped[list[EvalResult]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="EvalResult.id"
    )


class EvalResult(Base):
    """One example's output and scores within an eval run."""

    __tablename__ = "eval_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    interaction_id: Mapped[str | None] = mapped_column(String(32))
    prompt: Mapped[list[Any]] = mapped_column(default=list)
    reference: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text, default="")
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    example_index: Mapped[int | None] = mapped_column(Integer)

    run: Mapped[EvalRun] = relationship(back_populates="results")


class JudgeAnswer(Base):
    """A judge model's answer to one request, so a re-run of the same judging costs nothing."""

    __tablename__ = "judge_answers"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # hash of judge + request
    judge: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))  # rubric | pairwise
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StageChange(Base):
    """The audit log of the registry: every stage change, who made it, why, on what evidence."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    task: Mapped[str] = mapped_column(String(200), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    from_stage: Mapped[str] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    traffic_percent: Mapped[float] = mapped_column(Float, default=0.0)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    eval_run_id: Mapped[int | None] = mapped_column(ForeignKey("eval_runs.id"))


class GatewayKey(Base):
    """A client API key of the gateway: only its hash is stored, with the tenants and tasks it
    may use (empty lists: any)."""

    __tablename__ = "gateway_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # shown by `keys list` to recognise a key
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenants: Mapped[list[Any]] = mapped_column(default=list)
    tasks: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
