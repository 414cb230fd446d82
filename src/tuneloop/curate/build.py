"""Building immutable dataset versions, and reading them back for the train and evaluate stages.

A version is a folder ``<artifacts>/datasets/<name>/v<N>/`` plus a ``Dataset`` row holding its
content hash; rebuilding unchanged data returns the existing version instead of a copy, so a
version number always means new content.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, make_url, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from tuneloop.config import Config
from tuneloop.curate.card import CARD_JSON, CARD_MD, card_data, render_card
from tuneloop.curate.export import (
    EVAL_FILE,
    IDS_FILE,
    PAIR_FILES,
    SPLIT_FILES,
    TRAIN_FILE,
    SplitWriter,
    StatsCollector,
    content_hash,
    write_manifest,
)
from tuneloop.curate.pii import redaction_step, redactor_from_config
from tuneloop.curate.select import CANDIDATES, Selection, Transform, iter_selected
from tuneloop.curate.spool import Spool, decide, spooled_examples
from tuneloop.errors import InputError, StoreError
from tuneloop.store import Dataset, DatasetExample, Store

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
FORMAT = "openai-chat-jsonl"
OPENAI_COUNT_MODEL = "gpt-4o-mini"
INSERT_BATCH = 5000


def build_dataset(
    store: Store,
    config: Config,
    *,
    task: str | None = None,
    name: str | None = None,
    tokenizer: Any = None,
    transforms: Sequence[Transform] = (),
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Select → split → export → a new ``Dataset`` version (or the newest one if unchanged).

    ``task`` defaults to ``config.task`` and ``name`` to the task. ``tokenizer`` (a transformers
    tokenizer or a ``text -> list`` callable) makes token counts exact; without it they are
    estimated. Raises ``InputError`` naming the drop reasons when no example passes the filters.
    """
    task = task or config.task
    name = name or task
    if not NAME_PATTERN.match(name):
        raise InputError(f"dataset name {name!r} must be letters, digits, '.', '_' or '-'")
    curate = config.curate
    redactions: Counter[str] = Counter()
    steps = list(transforms)
    if curate.redact_pii:
        steps.insert(0, redaction_step(redactor_from_config(curate), redactions))
    drops: Counter[str] = Counter()
    params = {
        "task": task,
        **curate.model_dump(mode="json"),
        "transforms": [getattr(t, "__name__", repr(t)) for t in steps],
    }
    root = config.artifacts_dir / "datasets" / name
    staging = root / f".staging-{uuid.uuid4().hex}"
    spool = Spool(staging / ".spool")
    try:
        spool.add_all(
            iter_selected(
                store, curate, task=task, drops=drops, transforms=steps, progress=progress
            )
        )
        candidates = drops.pop(CANDIDATES)
        distinct = spool.count()
        if spool.added > distinct:
            drops["duplicate"] += spool.added - distinct
        invalid = {r: n for r, n in drops.items() if r.startswith("invalid: ")}
        if curate.strict and invalid:
            raise InputError(
                f"{sum(invalid.values())} invalid example(s) for task {task!r}, nothing built "
                f"(curate.strict): " + "; ".join(f"{r.removeprefix('invalid: ')} ({n})"
                                                  for r, n in sorted(invalid.items()))
            )  # fmt: skip
        decisions = decide(
            spool,
            near=curate.near_duplicates and distinct > 1,
            threshold=curate.near_dup_threshold,
            permutations=curate.near_dup_permutations,
            max_per_category=curate.max_per_category,
            balance=curate.balance_categories,
            eval_fraction=curate.eval_fraction,
            seed=curate.split_seed,
            split_group=curate.split_group,
            stratify=curate.stratify_by_category,
        )
        if decisions.near_dropped:
            drops["near_duplicate"] += decisions.near_dropped
        if decisions.capped:
            drops["category_cap"] += sum(decisions.capped.values())
        if not decisions.kept.any():
            raise InputError(_empty_message(task, Selection([], candidates, drops)))
        writer = SplitWriter(staging)
        collector = StatsCollector(
            tokenizer=tokenizer,
            # Without a tokenizer, OpenAI's own encoding counts when tiktoken has it cached.
            model=None if tokenizer is not None else OPENAI_COUNT_MODEL,
        )
        try:
            for split, example in spooled_examples(spool, decisions):
                writer.add(split, example)
                collector.add(split, example)
        finally:
            writer.close()
        spool.close()
        digest = writer.finish()
        stats = {
            "train_examples": writer.counts["train"],
            "eval_examples": writer.counts["eval"],
            "candidates": candidates,
            "dropped": sum(drops.values()),
            "drop_reasons": dict(sorted(drops.items())),
            **collector.result(epochs=config.train.epochs, max_length=config.train.max_length),
            "redactions": {
                "enabled": curate.redact_pii,
                "counts": dict(sorted(redactions.items())),
            },
            "duplicates": {
                "exact": drops.get("duplicate", 0),
                "near": decisions.near_dropped,
                "threshold": curate.near_dup_threshold if curate.near_duplicates else None,
                "largest_cluster": decisions.largest_cluster,
            },
            "category_caps": dict(sorted(decisions.capped.items())),
            "preference_pairs": dict(writer.pairs),
        }
        latest = latest_dataset(store, name, workspace=config.workspace, with_examples=False)
        if latest is not None and latest.content_hash == digest:
            writer.discard_ids()
            _restore_if_missing(latest, staging, params, stats)
            return latest
        dataset = _insert_version(
            store, name, task, root, staging, digest, params, stats, writer, config.workspace
        )
        return _absolute(dataset, config.workspace)
    finally:
        spool.close()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _insert_version(
    store: Store,
    name: str,
    task: str,
    root: Path,
    staging: Path,
    digest: str,
    params: dict[str, Any],
    stats: dict[str, Any],
    writer: SplitWriter,
    workspace: Path,
) -> Dataset:
    try:
        with store.session() as session:
            current = session.scalar(select(func.max(Dataset.version)).where(Dataset.name == name))
            version = (current or 0) + 1
            final = root / f"v{version}"
            _write_manifest_and_card(staging, _manifest(name, version, task, digest, params, stats))
            dataset = Dataset(
                name=name,
                version=version,
                task=task,
                content_hash=digest,
                path=stored_path(final, workspace),
                params=params,
                stats=stats,
            )
            session.add(dataset)
            session.flush()  # a concurrent build of the same version fails here, before any move
            for split in SPLIT_FILES:  # membership rows in batches, never all at once
                batch: list[dict[str, Any]] = []
                for interaction_id in writer.ids(split):
                    batch.append(
                        {"dataset_id": dataset.id, "interaction_id": interaction_id, "split": split}
                    )
                    if len(batch) >= INSERT_BATCH:
                        session.execute(insert(DatasetExample), batch)
                        batch = []
                if batch:
                    session.execute(insert(DatasetExample), batch)
            writer.discard_ids()
            if final.exists():  # left by a store that was reset; the store is the source of truth
                shutil.rmtree(final)
            staging.rename(final)
    except IntegrityError as exc:
        raise StoreError(
            f"another build created a version of dataset {name!r} at the same time; run again"
        ) from exc
    return dataset


def _write_manifest_and_card(directory: Path, manifest: dict[str, Any]) -> None:
    write_manifest(directory, manifest)
    card = card_data(manifest)
    (directory / CARD_JSON).write_text(
        json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (directory / CARD_MD).write_text(render_card(card), encoding="utf-8")


def _manifest(
    name: str, version: int, task: str, digest: str, params: dict[str, Any], stats: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "task": task,
        "format": FORMAT,
        "content_hash": digest,
        "files": {
            "train": TRAIN_FILE,
            "eval": EVAL_FILE,
            "interaction_ids": IDS_FILE,
            "pairs_train": PAIR_FILES["train"],
            "pairs_eval": PAIR_FILES["eval"],
            "card": CARD_MD,
        },
        "filters": params,
        **stats,
    }


def _restore_if_missing(
    dataset: Dataset, staging: Path, params: dict[str, Any], stats: dict[str, Any]
) -> None:
    """Same content but the folder was deleted: the fresh files are identical, so put them back."""
    path = Path(dataset.path)
    if all((path / name).is_file() for name in (TRAIN_FILE, EVAL_FILE)):
        return
    _write_manifest_and_card(
        staging,
        _manifest(dataset.name, dataset.version, dataset.task, dataset.content_hash, params, stats),
    )
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(path)


def _empty_message(task: str, selection: Selection) -> str:
    if selection.candidates == 0:
        return (
            f"no interactions logged for task {task!r} yet; capture some calls or generate "
            "synthetic examples first"
        )
    return (
        f"no examples left for task {task!r}: all {selection.candidates} candidates were "
        f"dropped ({selection.describe_drops()})"
    )


def stored_path(folder: Path, workspace: Path) -> str:
    """A version folder as the store keeps it: relative to the workspace when inside it, so a
    shared store never points at one machine's absolute paths."""
    resolved = folder.resolve()
    try:
        return resolved.relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def _store_workspace(store: Store) -> Path | None:
    """The workspace of a SQLite store at its default place (``<workspace>/tuneloop.db``)."""
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).parent
    return None


def _absolute(dataset: Dataset, workspace: Path | None) -> Dataset:
    """The loaded row with its folder made absolute for this machine (not written back)."""
    if not Path(dataset.path).is_absolute() and workspace is not None:
        dataset.path = str((workspace / dataset.path).resolve())
    return dataset


def latest_dataset(
    store: Store, name: str, *, workspace: Path | None = None, with_examples: bool = True
) -> Dataset | None:
    """The newest version of ``name``, with its examples loaded (unless ``with_examples`` is
    off: a million membership rows are not worth loading to compare a hash).

    ``workspace`` resolves the stored relative folder; without it, a SQLite store's own folder
    is taken as the workspace (the default layout).
    """
    query = select(Dataset).where(Dataset.name == name).order_by(Dataset.version.desc()).limit(1)
    if with_examples:
        query = query.options(selectinload(Dataset.examples))
    with store.session() as session:
        dataset = session.scalar(query)
    if dataset is None:
        return None
    return _absolute(dataset, workspace or _store_workspace(store))


def list_datasets(
    store: Store, *, name: str | None = None, workspace: Path | None = None
) -> list[Dataset]:
    """Every dataset version (of ``name`` if given), by name then version."""
    query = select(Dataset).order_by(Dataset.name, Dataset.version)
    if name:
        query = query.where(Dataset.name == name)
    with store.session() as session:
        datasets = list(session.scalars(query))
    base = workspace or _store_workspace(store)
    return [_absolute(dataset, base) for dataset in datasets]


def resolve_dataset(store: Store, ref: str, *, workspace: Path | None = None) -> Dataset:
    """``name``, ``name@latest``, ``name@3`` or ``name@v3`` → that dataset version."""
    name, _, version_text = ref.partition("@")
    version_text = version_text.removeprefix("v")
    if version_text in ("", "latest"):
        dataset = latest_dataset(store, name, workspace=workspace)
    elif version_text.isdigit():
        with store.session() as session:
            dataset = session.scalar(
                select(Dataset)
                .where(Dataset.name == name, Dataset.version == int(version_text))
                .options(selectinload(Dataset.examples))
            )
    else:
        raise InputError(f"dataset reference {ref!r} must be NAME, NAME@latest or NAME@N")
    if dataset is None:
        known = sorted({d.label for d in list_datasets(store, name=name)})
        hint = f"; versions: {', '.join(known)}" if known else " (see `tuneloop dataset list`)"
        raise InputError(f"no dataset {ref!r}{hint}")
    return _absolute(dataset, workspace or _store_workspace(store))


def load_split(
    dataset: Dataset, split: str, *, with_ids: bool = False, verify: bool = True
) -> list[dict[str, Any]]:
    """The examples of one split as ``{"messages": [...]}`` dicts, read from the exported file.

    ``verify`` checks the files still match the version's content hash (versions are
    immutable); ``with_ids`` adds each example's ``interaction_id``.
    """
    if split not in SPLIT_FILES:
        raise InputError(f"split {split!r} must be one of {', '.join(SPLIT_FILES)}")
    directory = Path(dataset.path)
    if not directory.is_absolute():
        raise InputError(
            f"dataset {dataset.label} is stored relative to its workspace ({dataset.path}); "
            "look it up with the workspace (resolve_dataset(store, ref, workspace=...))"
        )
    path = directory / SPLIT_FILES[split]
    if not path.is_file():
        raise InputError(
            f"dataset {dataset.label} has no {path}; rebuild it with `tuneloop dataset build`"
        )
    if verify and content_hash(directory) != dataset.content_hash:
        raise InputError(
            f"the files of dataset {dataset.label} in {directory} were changed after "
            "it was built; build a new version instead of editing one"
        )
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if with_ids:
        ids = json.loads((directory / IDS_FILE).read_text(encoding="utf-8"))[split]
        for record, interaction_id in zip(records, ids, strict=True):
            record["interaction_id"] = interaction_id
    return records


def load_pairs(dataset: Dataset, split: str, *, verify: bool = True) -> list[dict[str, Any]]:
    """The preference pairs of one split (OpenAI DPO lines), from the version's corrections.

    A pair is a corrected answer: the user's version (``preferred_output``) is preferred to the
    model's original (``non_preferred_output``). A version built before pairs existed, or
    with no corrections in ``split``, gives an empty list; callers that need pairs say so.
    """
    load_split(dataset, split, verify=verify)  # the split name, the folder and the hash
    path = Path(dataset.path) / PAIR_FILES[split]
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
