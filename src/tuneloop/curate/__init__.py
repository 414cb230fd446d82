"""Curate: turn captured interactions into versioned, validated train/eval datasets.

The pipeline is ``select`` (filters, dedup, validation) → ``split`` (hash split by prompt) →
``export`` (JSONL + manifest) → ``build`` (immutable ``Dataset`` row). Later steps such as PII
redaction, near-duplicate removal and category balancing plug in as ``Transform`` functions
given to ``select_examples`` or as new steps between select and split in ``build_dataset``.
"""

from tuneloop.curate.build import (
    build_dataset,
    latest_dataset,
    list_datasets,
    load_split,
    resolve_dataset,
)
from tuneloop.curate.forget import DatasetPurge, purge_examples
from tuneloop.curate.select import Example, Selection, select_examples
from tuneloop.curate.split import assign_split, split_examples
from tuneloop.curate.validate import ValidationReport, validate_example, validate_jsonl

__all__ = [
    "DatasetPurge",
    "Example",
    "Selection",
    "ValidationReport",
    "assign_split",
    "build_dataset",
    "latest_dataset",
    "list_datasets",
    "load_split",
    "purge_examples",
    "resolve_dataset",
    "select_examples",
    "split_examples",
    "validate_example",
    "validate_jsonl",
]
