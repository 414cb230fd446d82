"""Curate: turn captured interactions into versioned, validated train/eval datasets.

The pipeline is ``select`` (streamed filters, PII redaction, validation, exact dedup) →
``dedup`` (MinHash LSH near-duplicates, category caps) → ``split`` (grouped, stratified) →
``export`` (JSONL, DPO pairs, manifest, card) → ``build`` (immutable ``Dataset`` row).
``versions`` shows, diffs and exports versions; ``checks`` validates any dataset file.
"""

from tuneloop.curate.build import (
    build_dataset,
    latest_dataset,
    list_datasets,
    load_pairs,
    load_split,
    resolve_dataset,
)
from tuneloop.curate.checks import (
    ValidateOptions,
    ValidationReport,
    count_lines,
    load_schema,
    validate_path,
)
from tuneloop.curate.dedup import cap_categories, remove_near_copies, remove_near_duplicates
from tuneloop.curate.forget import DatasetPurge, purge_examples
from tuneloop.curate.pii import Redactor, redact_path, redactor_from_config
from tuneloop.curate.pricing import openai_default_epochs
from tuneloop.curate.select import (
    Example,
    Selection,
    count_candidates,
    select_examples,
    stream_examples,
)
from tuneloop.curate.split import assign_split, split_examples
from tuneloop.curate.validate import validate_example
from tuneloop.curate.versions import diff_refs, export_version, show_version

__all__ = [
    "DatasetPurge",
    "Example",
    "Redactor",
    "Selection",
    "ValidateOptions",
    "ValidationReport",
    "assign_split",
    "build_dataset",
    "cap_categories",
    "count_candidates",
    "count_lines",
    "diff_refs",
    "export_version",
    "latest_dataset",
    "list_datasets",
    "load_pairs",
    "load_schema",
    "load_split",
    "openai_default_epochs",
    "purge_examples",
    "redact_path",
    "redactor_from_config",
    "remove_near_copies",
    "remove_near_duplicates",
    "resolve_dataset",
    "select_examples",
    "show_version",
    "split_examples",
    "stream_examples",
    "validate_example",
    "validate_path",
]
