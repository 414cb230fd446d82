"""Model registry: versions v1, v2, … per task, their lineage, and their routing stage."""

from tuneloop.registry.versions import (
    STAGES,
    list_versions,
    register_version,
    resolve_version,
    set_stage,
    update_metrics,
)

__all__ = [
    "STAGES",
    "list_versions",
    "register_version",
    "resolve_version",
    "set_stage",
    "update_metrics",
]
