"""The store: SQLAlchemy tables shared by every stage, SQLite by default, PostgreSQL by URL."""

from tuneloop.store.engine import Store
from tuneloop.store.jobs import JobRecorder
from tuneloop.store.models import (
    Base,
    Dataset,
    DatasetExample,
    EvalResult,
    EvalRun,
    Feedback,
    GatewayKey,
    Interaction,
    Job,
    JobEvent,
    JobEventKind,
    JobStatus,
    JudgeAnswer,
    ModelVersion,
    OptOut,
    StageChange,
    new_id,
    utcnow,
)

__all__ = [
    "Base",
    "Dataset",
    "DatasetExample",
    "EvalResult",
    "EvalRun",
    "Feedback",
    "GatewayKey",
    "Interaction",
    "Job",
    "JobEvent",
    "JobEventKind",
    "JobRecorder",
    "JobStatus",
    "JudgeAnswer",
    "ModelVersion",
    "OptOut",
    "StageChange",
    "Store",
    "new_id",
    "utcnow",
]
