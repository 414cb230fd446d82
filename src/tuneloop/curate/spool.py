"""A streamed build's working storage: accepted examples spooled to SQLite, decisions in arrays.

``build_dataset`` never holds the examples of a version in memory. Selected examples go into a
SQLite file in the version's staging folder (exact duplicates resolved there by an upsert that
keeps the best-rewarded copy). One pass in rank order (best-rewarded first) makes the prompt
MinHash signatures (to a flat file, read back only for compared pairs), the LSH band keys and the
split keys, as compact arrays; near-dup, category caps and the split decide on those arrays; a
last pass in content-key order writes the files. About 200 bytes per example stay in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneloop.curate.dedup import (
    MinHasher,
    answer_words,
    band_keys,
    category_caps,
    lsh_shape,
    near_duplicates,
    prompt_words,
)
from tuneloop.curate.select import Example
from tuneloop.curate.split import KeyCollector, SplitKeys, split_flags

SPOOL_FILE = "spool.sqlite"
SIGNATURES_FILE = "signatures.bin"
BATCH = 2000


class Spool:
    """Examples keyed by content, the best-rewarded copy of each key kept."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.db = sqlite3.connect(directory / SPOOL_FILE)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-32000")  # 32 MB
        self.db.execute(
            "CREATE TABLE examples (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, "
            "rank REAL NOT NULL, reward REAL, data TEXT NOT NULL)"
        )
        self.added = 0

    def add_all(self, examples: Iterable[Example]) -> None:
        batch: list[tuple[str, float, float | None, str]] = []
        for example in examples:
            reward = example.reward
            batch.append((example.key, reward or 0.0, reward, _dump(example)))
            if len(batch) >= BATCH:
                self._insert(batch)
                batch = []
        if batch:
            self._insert(batch)

    def _insert(self, batch: list[tuple[str, float, float | None, str]]) -> None:
        self.added += len(batch)
        self.db.executemany(
            "INSERT INTO examples (key, rank, reward, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET rank = excluded.rank, reward = excluded.reward, "
            "data = excluded.data WHERE excluded.reward IS NOT NULL "
            "AND (examples.reward IS NULL OR excluded.reward > examples.reward)",
            batch,
        )

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM examples").fetchone()[0])

    def by_rank(self) -> Iterator[tuple[int, Example]]:
        """``(row id, example)``, best-rewarded first (then by content key)."""
        yield from self._rows("SELECT id, data FROM examples ORDER BY rank DESC, key")

    def by_key(self) -> Iterator[tuple[int, Example]]:
        """``(row id, example)`` by content key: the order of a version's files."""
        yield from self._rows("SELECT id, data FROM examples ORDER BY key")

    def get_many(self, row_ids: np.ndarray) -> list[Example]:
        """The examples of these row ids, in the given order."""
        wanted = row_ids.tolist()
        found: dict[int, Example] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row_id, data in self.db.execute(
                f"SELECT id, data FROM examples WHERE id IN ({marks})", chunk
            ):
                found[row_id] = _load(data)
        return [found[row_id] for row_id in wanted]

    def _rows(self, query: str) -> Iterator[tuple[int, Example]]:
        cursor = self.db.execute(query)
        while rows := cursor.fetchmany(BATCH):
            for row_id, data in rows:
                yield row_id, _load(data)

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _dump(example: Example) -> str:
    return json.dumps(
        [
            example.interaction_id,
            example.messages,
            example.category,
            example.source,
            example.metadata,
            example.reward,
            example.rejected,
        ],
        ensure_ascii=False,
    )


def _load(data: str) -> Example:
    interaction_id, messages, category, source, metadata, reward, rejected = json.loads(data)
    return Example(interaction_id, messages, category, source, metadata, reward, rejected)


@dataclass
class Decisions:
    """What a streamed build decided for each spooled example (by row id)."""

    kept: np.ndarray  # bool per row id: in the version
    evals: np.ndarray  # bool per row id: in the eval split
    near_dropped: int
    largest_cluster: int
    capped: Counter[str]


def decide(
    spool: Spool,
    *,
    near: bool,
    threshold: float,
    permutations: int,
    max_per_category: int | None,
    balance: bool,
    eval_fraction: float,
    seed: str,
    split_group: str,
    stratify: bool,
) -> Decisions:
    """Near-dup, category caps and the split over the spool, holding only compact arrays."""
    hasher = MinHasher(permutations)
    bands, rows = lsh_shape(threshold, permutations)
    row_ids: array[int] = array("q")
    keys: list[np.ndarray] = []
    collector = KeyCollector(split_group)
    signature_path = spool.directory / SIGNATURES_FILE
    with signature_path.open("wb") as signatures:
        batch: list[list[str]] = []

        def flush() -> None:
            if batch:
                computed = hasher.signatures(batch)
                signatures.write(computed.tobytes())
                keys.append(band_keys(computed, bands, rows))
                batch.clear()

        for row_id, example in spool.by_rank():
            row_ids.append(row_id)
            collector.add(example)
            if near:
                batch.append(prompt_words(example))
                if len(batch) >= BATCH:
                    flush()
        flush()
    count = len(row_ids)
    positions_of = np.frombuffer(row_ids, dtype=np.int64) if count else np.zeros(0, np.int64)
    verdict = np.full(count, -1, dtype=np.int64)
    if near and count > 1:
        width = permutations * 4
        descriptor = os.open(signature_path, os.O_RDONLY)
        try:
            verdict = near_duplicates(
                np.concatenate(keys),
                lambda position: np.frombuffer(
                    os.pread(descriptor, width, position * width), dtype=np.uint32
                ),
                lambda positions: hasher.signatures(
                    [answer_words(example) for example in spool.get_many(positions_of[positions])]
                ),
                threshold=threshold,
            )
        finally:
            os.close(descriptor)
    keys.clear()
    split_keys = collector.keys()
    names = sorted(collector.category_codes)
    survivors = np.flatnonzero(verdict < 0)
    flags, capped = category_caps(
        (names[code] for code in split_keys.categories[survivors].tolist()),
        max_per_category=max_per_category,
        balance=balance,
    )
    final = survivors[np.array(flags, dtype=bool)] if len(survivors) else survivors
    held = split_flags(
        SplitKeys(
            prompts=split_keys.prompts[final],
            answers=split_keys.answers[final],
            extras=split_keys.extras[final],
            categories=split_keys.categories[final],
        ),
        eval_fraction=eval_fraction,
        seed=seed,
        stratify=stratify,
    )
    size = int(positions_of.max()) + 1 if count else 0
    kept = np.zeros(size, dtype=bool)
    evals = np.zeros(size, dtype=bool)
    kept[positions_of[final]] = True
    evals[positions_of[final[held]]] = True
    dropped = verdict[verdict >= 0]
    largest = 1 + int(np.bincount(dropped).max()) if len(dropped) else 1
    return Decisions(kept, evals, len(dropped), largest, capped)


def spooled_examples(spool: Spool, decisions: Decisions) -> Iterator[tuple[str, Example]]:
    """``(split, example)`` of every kept example, by content key."""
    for row_id, example in spool.by_key():
        if decisions.kept[row_id]:
            yield ("eval" if decisions.evals[row_id] else "train"), example
