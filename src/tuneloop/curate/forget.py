"""Removing examples from dataset versions that were already exported (a deletion request).

A version is immutable for training, but a tenant's right to be forgotten outranks that: its
files are rewritten without the examples, line for line otherwise unchanged, its content hash
follows the new bytes, and the version is marked (``purged_at``) so a reader knows models
trained on it saw data that is gone. Those models are reported, descendants included, so they
can be retrained.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tuneloop.curate.build import _store_workspace, _write_manifest_and_card
from tuneloop.curate.card import CARD_JSON, CARD_MD
from tuneloop.curate.export import (
    IDS_FILE,
    MANIFEST_FILE,
    PAIR_FILES,
    SPLIT_FILES,
    content_hash,
)
from tuneloop.store import Dataset, DatasetExample, ModelVersion, Store, utcnow

CHUNK = 500  # ids per IN (...) list


@dataclass
class DatasetPurge:
    """What removing examples from exported datasets touched."""

    datasets: list[str] = field(default_factory=list)  # labels of the versions rewritten
    examples: int = 0  # lines removed, over all versions and splits
    files: list[str] = field(default_factory=list)  # files rewritten
    removed_files: list[str] = field(default_factory=list)  # files deleted (not line-aligned)
    models: list[str] = field(default_factory=list)  # task@vN trained on a purged version


def purge_examples(
    store: Store, interaction_ids: Collection[str], *, workspace: Path | None = None
) -> DatasetPurge:
    """Rewrite every dataset version holding any of ``interaction_ids`` without them.

    Run it before the interactions are deleted (their memberships find the versions). Safe to
    run again after a crash: a version already rewritten has nothing left to drop.
    ``workspace`` resolves version folders stored relative to it (default: the SQLite store's
    folder).
    """
    base = workspace or _store_workspace(store)
    report = DatasetPurge()
    ids = sorted(set(interaction_ids))
    dataset_ids: set[int] = set()
    with store.session() as session:
        for start in range(0, len(ids), CHUNK):
            dataset_ids.update(
                session.scalars(
                    select(DatasetExample.dataset_id)
                    .where(DatasetExample.interaction_id.in_(ids[start : start + CHUNK]))
                    .distinct()
                )
            )
    gone = set(ids)
    for dataset_id in sorted(dataset_ids):
        with store.session() as session:
            dataset = session.get_one(Dataset, dataset_id, with_for_update=True)
            folder = Path(dataset.path)
            if not folder.is_absolute() and base is not None:
                folder = base / folder
            removed = _rewrite(folder, gone, report)
            dataset.content_hash = content_hash(folder)
            dataset.purged_at = utcnow()
            dataset.stats = _purged_stats(dataset.stats, removed)
            _update_manifest(folder, dataset)
            report.datasets.append(dataset.label)
            report.examples += sum(removed.values())
    report.models = _trained_on(store, dataset_ids)
    return report


def _rewrite(directory: Path, gone: set[str], report: DatasetPurge) -> dict[str, int]:
    """Drop the examples of ``gone`` ids from every file of a version folder.

    Derived files go first, then the split files, then the id list, so a run stopped half-way
    and started again finds each file either untouched (same length as the id list: drop) or
    done (shorter by exactly the dropped lines: leave).
    """
    ids_path = directory / IDS_FILE
    if not ids_path.is_file():
        return {split: 0 for split in SPLIT_FILES}
    ids: dict[str, list[str]] = json.loads(ids_path.read_text(encoding="utf-8"))
    drop = {
        split: {index for index, value in enumerate(ids.get(split, [])) if value in gone}
        for split in SPLIT_FILES
    }
    if not any(drop.values()):
        return {split: 0 for split in SPLIT_FILES}
    dropped_pairs = {
        _pair_key(record)
        for split, name in SPLIT_FILES.items()
        for record in _records(directory / name, drop[split], len(ids.get(split, [])))
    }
    rewritten = {*SPLIT_FILES.values(), IDS_FILE, MANIFEST_FILE, CARD_JSON, CARD_MD}
    for path in sorted(directory.iterdir()):
        if path.name in rewritten or not path.is_file() or path.name.startswith("."):
            continue
        aligned = next((s for s in SPLIT_FILES if path.name.startswith(s)), None)
        if path.name in PAIR_FILES.values():
            _drop_pairs(path, dropped_pairs, report)  # preference pairs: matched by content
        elif aligned is not None and path.suffix == ".jsonl":
            _drop_lines(path, drop[aligned], len(ids.get(aligned, [])), report)
        else:
            path.unlink()  # cannot tell which parts are whose: do not keep it
            report.removed_files.append(str(path))
    for split, name in SPLIT_FILES.items():
        _drop_lines(directory / name, drop[split], len(ids.get(split, [])), report)
    kept = {
        split: [value for index, value in enumerate(ids.get(split, [])) if index not in drop[split]]
        for split in SPLIT_FILES
    }
    _replace(ids_path, json.dumps(kept, indent=1) + "\n")
    report.files.append(str(ids_path))
    return {split: len(indices) for split, indices in drop.items()}


def _lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(handle)


def _records(path: Path, indices: set[int], expected: int) -> list[dict[str, Any]]:
    """The records at ``indices`` of a split file not yet rewritten (none once it is)."""
    if not indices or not path.is_file():
        return []
    lines = _lines(path)
    if len(lines) != expected:
        return []
    return [json.loads(lines[index]) for index in sorted(indices)]


def _pair_key(record: dict[str, Any]) -> str:
    """Prompt and answer of a chat record (a split line) as one comparable string."""
    messages = record.get("messages") or []
    prompt, answer = messages[:-1], messages[-1].get("content") if messages else None
    return json.dumps([prompt, answer], sort_keys=True, ensure_ascii=False)


def _drop_pairs(path: Path, dropped: set[str], report: DatasetPurge) -> None:
    lines = _lines(path)
    kept = []
    for line in lines:
        record = json.loads(line) if line.strip() else {}
        prompt = (record.get("input") or {}).get("messages") or []
        preferred = record.get("preferred_output") or [{}]
        key = json.dumps([prompt, preferred[0].get("content")], sort_keys=True, ensure_ascii=False)
        if key not in dropped:
            kept.append(line)
    if len(kept) != len(lines):
        _replace(path, "".join(kept))
        report.files.append(str(path))


def _drop_lines(path: Path, indices: set[int], expected: int, report: DatasetPurge) -> None:
    """Drop lines by position from a file with one line per example of its split."""
    if not indices or not path.is_file():
        return
    lines = _lines(path)
    if len(lines) == expected - len(indices):
        return  # rewritten by an earlier run that stopped before the id list
    if len(lines) != expected:
        path.unlink()  # not one line per example: cannot tell which parts are whose
        report.removed_files.append(str(path))
        return
    _replace(path, "".join(line for index, line in enumerate(lines) if index not in indices))
    report.files.append(str(path))


def _replace(path: Path, text: str) -> None:
    """Write next to the file, then rename over it: a crash leaves the old or the new file."""
    temporary = path.with_name(f".{path.name}.purge")
    temporary.write_text(text, encoding="utf-8", newline="")
    os.replace(temporary, path)


def _purged_stats(stats: dict[str, Any], removed: dict[str, int]) -> dict[str, Any]:
    updated = dict(stats)
    counts = dict(updated.get("counts") or {})
    for split, number in removed.items():
        if split in counts:
            counts[split] -= number
        key = f"{split}_examples"
        if isinstance(updated.get(key), int):
            updated[key] -= number
    if "total" in counts:
        counts["total"] = sum(counts.get(split, 0) for split in SPLIT_FILES)
    if counts:
        updated["counts"] = counts
    earlier = dict(updated.get("purged") or {})
    updated["purged"] = {
        split: int(earlier.get(split, 0)) + number for split, number in removed.items()
    } | {"note": "examples removed after the build (deletion request); token stats predate it"}
    return updated


def _update_manifest(directory: Path, dataset: Dataset) -> None:
    """The manifest and the card follow the new counts, hash and purge mark."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(dataset.stats)
    manifest["content_hash"] = dataset.content_hash
    manifest["purged_at"] = dataset.purged_at.isoformat() if dataset.purged_at else None
    _write_manifest_and_card(directory, manifest)


def _trained_on(store: Store, dataset_ids: set[int]) -> list[str]:
    """Model versions trained on these datasets, and every version continued from one."""
    if not dataset_ids:
        return []
    with store.session() as session:
        versions = session.scalars(select(ModelVersion)).all()
        tainted = {v.id for v in versions if v.dataset_id in dataset_ids}
        grew = True
        while grew:  # children inherit what their parent learned
            children = {v.id for v in versions if v.parent_id in tainted} - tainted
            tainted |= children
            grew = bool(children)
        return [
            f"{v.task}@{v.name}"
            for v in sorted(versions, key=lambda v: (v.task, v.version))
            if v.id in tainted
        ]
