"""The streamed build (spool on disk, compact arrays) decides exactly as the in-memory pipeline."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuneloop.config import Config
from tuneloop.curate import (
    build_dataset,
    cap_categories,
    remove_near_duplicates,
    select_examples,
    split_examples,
)
from tuneloop.curate.export import EVAL_FILE, IDS_FILE, PAIR_FILES, TRAIN_FILE, write_split_files
from tuneloop.curate.pii import redaction_step, redactor_from_config
from tuneloop.store import Interaction, Store

WORDS = [f"w{i}" for i in range(400)]


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Config:
    """On the conftest store (SQLite and PostgreSQL): the filters run in either's SQL."""
    return Config.model_validate(
        {
            "workspace": str(tmp_path / "ws"),
            "task": "layout",
            "store": {"url": store_url},
            "curate": {"max_per_category": 40, "split_group": "metadata:platform"},
        }
    )


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    store = Store(config.store_url)
    yield store
    store.close()


def fill(store: Store, count: int = 300) -> None:
    """Varied interactions: exact and near copies, ties and missing rewards, corrections, PII."""
    rng = random.Random(5)
    rows: list[dict[str, object]] = []
    for index in range(count):
        roll = rng.random()
        if rows and roll < 0.1:
            row = dict(rng.choice(rows))  # an exact copy, maybe better rewarded
            row["reward"] = rng.choice([None, 0.5, 0.9])
        elif rows and roll < 0.25:
            row = dict(rng.choice(rows))  # a near copy: one word more in prompt and answer
            messages = json.loads(json.dumps(row["messages"]))
            messages[-1]["content"] += " please"
            row["messages"] = messages
            row["response"] = str(row["response"]).replace("}", ', "x": 1}')
        else:
            words = " ".join(rng.choice(WORDS) for _ in range(15))
            prompt = f"Make screen {index}: {words}"
            if rng.random() < 0.1:
                prompt += f" mail me at user{index}@corp.example.io"
            answer = json.dumps({"type": "FRAME", "name": " ".join(rng.sample(WORDS, 8))})
            row = {
                "messages": [{"role": "user", "content": prompt}],
                "response": answer,
                "reward": rng.choice([None, 0.5, 0.8, 0.8, 1.0]),
                "metadata_": {
                    "category": rng.choice(["a", "b", "c"]),
                    "platform": rng.choice(["web", "mobile", "tv", "watch"]),
                },
                "corrected_response": (
                    json.dumps({"type": "FRAME", "fixed": index}) if rng.random() < 0.1 else None
                ),
            }
        rows.append(row)
    with store.session() as session:
        for index, row in enumerate(rows):
            session.add(
                Interaction(
                    task="layout",
                    source="synthetic" if row["reward"] is None else "app",
                    quality=8,
                    prompt_hash=f"{index}",
                    **row,
                )
            )


def in_memory(store: Store, config: Config, out: Path) -> tuple[int, str]:
    """The whole pipeline on lists: what a build did before it streamed."""
    curate = config.curate
    steps = [redaction_step(redactor_from_config(curate), Counter())]
    selection = select_examples(store, curate, task="layout", transforms=steps)
    near = remove_near_duplicates(
        selection.examples,
        threshold=curate.near_dup_threshold,
        permutations=curate.near_dup_permutations,
    )
    kept, _ = cap_categories(
        near.kept, max_per_category=curate.max_per_category, balance=curate.balance_categories
    )
    train, held_out = split_examples(
        kept,
        eval_fraction=curate.eval_fraction,
        seed=curate.split_seed,
        split_group=curate.split_group,
        stratify=curate.stratify_by_category,
    )
    return near.dropped, write_split_files(out, train, held_out)


def test_streamed_build_matches_the_in_memory_pipeline(
    store: Store, config: Config, tmp_path: Path
) -> None:
    fill(store)
    near_dropped, digest = in_memory(store, config, tmp_path / "lists")
    dataset = build_dataset(store, config)
    built = Path(dataset.path)
    assert dataset.content_hash == digest
    for name in (TRAIN_FILE, EVAL_FILE, IDS_FILE, *PAIR_FILES.values()):
        assert (built / name).read_bytes() == (tmp_path / "lists" / name).read_bytes(), name
    stats = dataset.stats
    assert near_dropped > 0 and stats["duplicates"]["near"] == near_dropped
    assert stats["drop_reasons"]["duplicate"] > 0 and stats["drop_reasons"]["category_cap"] > 0
    assert stats["counts"]["eval"] > 0 and stats["preference_pairs"]["train"] > 0
    assert not [p.name for p in built.iterdir() if p.name.startswith(".")]  # spool removed
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".staging")]


def test_streamed_build_stores_membership_rows_in_split_order(store: Store, config: Config) -> None:
    fill(store, 60)
    dataset = build_dataset(store, config)
    ids = json.loads((Path(dataset.path) / IDS_FILE).read_text(encoding="utf-8"))
    rows = {(e.interaction_id, e.split) for e in dataset_rows(store, dataset.id)}
    assert rows == {(i, split) for split, values in ids.items() for i in values}
    assert len(ids["train"]) == dataset.stats["counts"]["train"]


def dataset_rows(store: Store, dataset_id: int) -> list[object]:
    from sqlalchemy import select

    from tuneloop.store import DatasetExample

    with store.session() as session:
        return list(
            session.scalars(select(DatasetExample).where(DatasetExample.dataset_id == dataset_id))
        )
