"""Looking at dataset versions and taking them out: card, diff, export in any format.

Export reads the version's own files (checked against its content hash), redacts PII again by
default (a version built with redaction off, or files from an older build, still leave clean) and
writes the target format atomically; ``dpo`` takes the version's preference pairs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tuneloop.config import Config
from tuneloop.curate.build import load_pairs, load_split, resolve_dataset
from tuneloop.curate.card import CARD_JSON, card_data, diff_versions, render_card
from tuneloop.curate.checks import PROGRESS_EVERY
from tuneloop.curate.pii import ExampleState, Redactor, redactor_from_config
from tuneloop.errors import InputError
from tuneloop.formats import EXPORT_FORMATS, Record, write_splits
from tuneloop.store import Dataset, DatasetExample, Store


def version_card(dataset: Dataset) -> dict[str, Any]:
    """The card JSON of a version (from ``card.json``; rebuilt from the row's stats if gone)."""
    path = Path(dataset.path) / CARD_JSON
    if path.is_file():
        try:
            card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return card
        except (OSError, json.JSONDecodeError):
            pass
    manifest = {
        "name": dataset.name,
        "version": dataset.version,
        "task": dataset.task,
        "content_hash": dataset.content_hash,
        "filters": dataset.params,
        **dataset.stats,
    }
    return card_data(manifest)


def show_version(
    store: Store, ref: str, *, workspace: Path | None = None
) -> tuple[Dataset, dict[str, Any], str]:
    """``(dataset, card JSON, card markdown)`` of ``NAME@vN``."""
    dataset = resolve_dataset(store, ref, workspace=workspace)
    card = version_card(dataset)
    return dataset, card, render_card(card)


def diff_refs(
    store: Store, old_ref: str, new_ref: str, *, workspace: Path | None = None
) -> dict[str, Any]:
    """What changed from ``old_ref`` to ``new_ref`` (examples in/out, counts, coverage...)."""
    old = resolve_dataset(store, old_ref, workspace=workspace)
    new = resolve_dataset(store, new_ref, workspace=workspace)
    return diff_versions(
        version_card(old), version_card(new), _split_ids(store, old), _split_ids(store, new)
    )


def _split_ids(store: Store, dataset: Dataset) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {}
    query = (
        select(DatasetExample.interaction_id, DatasetExample.split)
        .where(DatasetExample.dataset_id == dataset.id)
        .execution_options(yield_per=5000)
    )
    with store.session() as session:
        for interaction_id, split in session.execute(query):
            ids.setdefault(split, set()).add(interaction_id)
    return ids


@dataclass
class ExportReport:
    """What an export wrote: files per split, examples, and PII replaced by kind."""

    dataset: str
    fmt: str
    files: dict[str, str] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)
    redacted: bool = True
    redactions: Counter[str] = field(default_factory=Counter)


def export_version(
    store: Store,
    config: Config,
    ref: str,
    fmt: str,
    out: str | Path,
    *,
    redact: bool = True,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write version ``ref`` as ``fmt`` under ``out`` (one file per split; hf: one folder).

    ``progress`` is called with ``(examples done, examples in the version)`` as records are
    read and redacted, every thousand.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    dataset = resolve_dataset(store, ref, workspace=config.workspace)
    redactor = redactor_from_config(config.curate) if redact else None
    report = ExportReport(dataset.label, fmt, redacted=redact)
    splits: dict[str, list[Record]] = {}
    counts = dataset.stats.get("counts", {}) if isinstance(dataset.stats, dict) else {}
    total = int(counts.get("total", 0))
    done = 0
    for split in ("train", "eval"):
        if fmt == "dpo":
            records = _pair_records(dataset, split)
        else:
            records = [Record(messages=line["messages"]) for line in load_split(dataset, split)]
        if redactor is not None:
            redacted = []
            for record in records:
                redacted.append(_redact(redactor, record, report.redactions))
                done += 1
                if progress is not None and done % PROGRESS_EVERY == 0:
                    progress(done, max(total, done))
            records = redacted
        else:
            done += len(records)
        splits[split] = records
        report.examples[split] = len(records)
    if progress is not None:
        progress(done, max(total, done))
    if fmt == "dpo" and not any(splits.values()):
        raise InputError(
            f"dataset {dataset.label} has no preference pairs (they come from corrected "
            "answers); export another format"
        )
    written = write_splits(splits, out, fmt, overwrite=overwrite)
    report.files = {split: str(path) for split, path in written.items()}
    return report


def _pair_records(dataset: Dataset, split: str) -> list[Record]:
    return [
        Record(
            messages=pair["input"]["messages"],
            chosen=pair["preferred_output"],
            rejected=pair["non_preferred_output"],
        )
        for pair in load_pairs(dataset, split)
    ]


def _redact(redactor: Redactor, record: Record, counts: Counter[str]) -> Record:
    state = ExampleState()
    messages = redactor.redact_value(record.messages, state, top=False)
    chosen = redactor.redact_value(record.chosen, state, top=False) if record.chosen else None
    rejected = redactor.redact_value(record.rejected, state, top=False) if record.rejected else None
    counts.update(state.counts)
    return Record(messages=messages, chosen=chosen, rejected=rejected, tools=record.tools)
