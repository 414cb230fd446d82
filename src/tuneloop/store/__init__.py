"""The store: SQLAlchemy tables shared by every stage, SQLite by default, PostgreSQL by URL."""

from tuneloop.store.engine import Store
from tuneloop.store.jobs import (
    JobRecorder,
    cancel_job,
    effective_status,
    get_job,
    list_jobs,
    stop_on_signals,
)
from tuneloop.store.models import (
    Base,
    Dataset,
    DatasetExample,
    EvalResult,
    EvalRun,
    Feedback,
    Interaction,
    Job,
    JobEvent,
    JobEventKind,
    JobStatus,
    ModelVersion,
    OptOut,
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
    "Interaction",
    "Job",
    "JobEvent",
    "JobEventKind",
    "JobRecorder",
    "JobStatus",
    "ModelVersion",
    "OptOut",
    "Store",
    "cancel_job",
    "effective_status",
    "get_job",
    "list_jobs",
    "new_id",
    "stop_on_signals",
    "utcnow",
]
