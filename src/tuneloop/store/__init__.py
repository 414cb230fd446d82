"""The store: SQLAlchemy tables shared by every stage, SQLite by default, PostgreSQL by URL."""

from tuneloop.store.engine import Store
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
    ModelVersion,
    OptOut,
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
    "JobStatus",
    "ModelVersion",
    "OptOut",
    "Store",
]
