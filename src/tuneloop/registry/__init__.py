"""Model registry: versions v1, v2, … per task, their lineage, their stage and its history.

``current(store, task)`` is the version serving a task in production; ``promote`` and
``rollback`` change stages in one transaction each, recorded in the audit log (``history``).
"""

from tuneloop.registry.merge import merge_version
from tuneloop.registry.stages import (
    HistoryEntry,
    current,
    default_actor,
    history,
    promote,
    rollback,
)
from tuneloop.registry.versions import (
    STAGES,
    Stage,
    has_weights,
    list_versions,
    register_version,
    resolve_version,
    servable,
    set_stage,
    update_metrics,
)

__all__ = [
    "STAGES",
    "HistoryEntry",
    "Stage",
    "current",
    "default_actor",
    "has_weights",
    "history",
    "list_versions",
    "merge_version",
    "promote",
    "register_version",
    "resolve_version",
    "rollback",
    "servable",
    "set_stage",
    "update_metrics",
]
