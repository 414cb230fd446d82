"""Writing a dataset version: byte-stable JSONL files, their content hash, and a manifest.

The JSONL files are in the OpenAI/Together chat format (``{"messages": [...]}`` per line), so
they can be uploaded to a hosted fine-tuning job as they are. Keys are sorted and lines end in
``\\n`` so the same examples always give the same bytes and the same content hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tuneloop.curate.pricing import estimate_training_cost, openai_default_epochs
from tuneloop.curate.select import Example
from tuneloop.curate.tokens import TokenCounter

TRAIN_FILE = "train.jsonl"
EVAL_FILE = "eval.jsonl"
MANIFEST_FILE = "manifest.json"
IDS_FILE = "interaction_ids.json"
SPLIT_FILES = {"train": TRAIN_FILE, "eval": EVAL_FILE}
# Preference pairs (OpenAI DPO lines) from corrected examples, one file per split.
PAIR_FILES = {"train": "pairs_train.jsonl", "eval": "pairs_eval.jsonl"}


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"


class SplitWriter:
    """Writes a version's files one example at a time, in the order given (a streamed build).

    The bytes are those of :func:`write_split_files`: sorted keys, one line per example, and the
    interaction ids file as ``json.dumps(ids, indent=1)`` writes it, without holding the ids.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.counts = {"train": 0, "eval": 0}
        self.pairs = {"train": 0, "eval": 0}
        self._files = {
            split: (directory / name).open("w", encoding="utf-8", newline="\n")
            for split, name in SPLIT_FILES.items()
        }
        self._pair_files = {
            split: (directory / name).open("w", encoding="utf-8", newline="\n")
            for split, name in PAIR_FILES.items()
        }
        self._ids = {
            split: (directory / f".ids-{split}").open("w", encoding="utf-8", newline="\n")
            for split in SPLIT_FILES
        }

    def add(self, split: str, example: Example) -> None:
        self._files[split].write(jsonl_line(example.record()))
        self._ids[split].write(json.dumps(example.interaction_id) + "\n")
        self.counts[split] += 1
        if example.rejected:
            self._pair_files[split].write(jsonl_line(pair_record(example)))
            self.pairs[split] += 1

    def close(self) -> None:
        for handle in (*self._files.values(), *self._pair_files.values(), *self._ids.values()):
            handle.close()

    def ids(self, split: str) -> Iterator[str]:
        """The interaction ids written to ``split``, in file order."""
        with (self.directory / f".ids-{split}").open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)

    def finish(self) -> str:
        """Close the files, write the ids file and return the content hash."""
        self.close()
        with (self.directory / IDS_FILE).open("w", encoding="utf-8", newline="\n") as out:
            out.write("{")
            for number, split in enumerate(SPLIT_FILES):
                out.write(("," if number else "") + f"\n {json.dumps(split)}: [")
                with (self.directory / f".ids-{split}").open(encoding="utf-8") as ids:
                    for index, line in enumerate(ids):
                        out.write(("," if index else "") + "\n  " + line.rstrip("\n"))
                out.write("\n ]" if self.counts[split] else "]")
            out.write("\n}\n")
        return content_hash(self.directory)

    def discard_ids(self) -> None:
        for split in SPLIT_FILES:
            (self.directory / f".ids-{split}").unlink(missing_ok=True)


def write_split_files(
    directory: Path, train: Sequence[Example], held_out: Sequence[Example]
) -> str:
    """Write ``train.jsonl``, ``eval.jsonl``, the pairs and the interaction ids; return the
    content hash."""
    writer = SplitWriter(directory)
    for split, examples in (("train", train), ("eval", held_out)):
        for example in examples:
            writer.add(split, example)
    digest = writer.finish()
    writer.discard_ids()
    return digest


def pair_record(example: Example) -> dict[str, Any]:
    """A corrected example as an OpenAI DPO line: the user's version preferred to the model's."""
    return {
        "input": {"messages": example.prompt},
        "preferred_output": [{"role": "assistant", "content": example.target}],
        "non_preferred_output": [{"role": "assistant", "content": example.rejected or ""}],
    }


def content_hash(directory: Path) -> str:
    """sha256 over the train and eval bytes (with file names, so a line moving splits counts)."""
    digest = hashlib.sha256()
    for name in (TRAIN_FILE, EVAL_FILE):
        digest.update(name.encode() + b"\x00")
        with (directory / name).open("rb") as handle:  # in chunks: a split can be gigabytes
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\x00")
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (directory / MANIFEST_FILE).write_text(text, encoding="utf-8", newline="\n")


class StatsCollector:
    """Counts, token stats and coverage of a version, gathered one example at a time."""

    def __init__(self, *, tokenizer: Any = None, model: str | None = None) -> None:
        self.counter = TokenCounter(tokenizer, model=model)
        self.tokens: dict[str, array[int]] = {"train": array("q"), "eval": array("q")}
        self.categories: dict[str, Counter[str]] = {"train": Counter(), "eval": Counter()}
        self.intents: dict[str, Counter[str]] = {"train": Counter(), "eval": Counter()}
        self.sources: Counter[str] = Counter()

    def add(self, split: str, example: Example) -> None:
        self.tokens[split].append(self.counter.count_example(example.messages))
        self.categories[split][example.category] += 1
        self.intents[split][_intent(example)] += 1
        self.sources[example.source] += 1

    def result(self, *, epochs: int = 3, max_length: int | None = None) -> dict[str, Any]:
        """Counts, token stats and histogram, coverage by category, intent and source, and a
        training cost estimate per provider (at ``epochs``, and at OpenAI's default epochs)."""
        tokens = self.tokens
        token_stats: dict[str, Any] = {
            split: _summary(list(values)) for split, values in tokens.items()
        }
        token_stats["method"] = self.counter.method
        token_stats["estimated"] = self.counter.estimated
        token_stats["histogram"] = token_histogram([*tokens["train"], *tokens["eval"]])
        if max_length is not None:
            token_stats["max_length"] = max_length
            token_stats["over_max_length"] = sum(
                1 for values in tokens.values() for value in values if value > max_length
            )
        training_tokens = sum(tokens["train"])
        train, held_out = len(tokens["train"]), len(tokens["eval"])
        return {
            "counts": {"train": train, "eval": held_out, "total": train + held_out},
            "tokens": token_stats,
            "coverage": {split: dict(sorted(c.items())) for split, c in self.categories.items()},
            "coverage_by_intent": {
                split: dict(sorted(c.items())) for split, c in self.intents.items()
            },
            "sources": dict(sorted(self.sources.items())),
            "cost_estimate": {
                "training_tokens": training_tokens,
                "epochs": epochs,
                "estimated_tokens": self.counter.estimated,
                "usd": estimate_training_cost(training_tokens, epochs),
                "openai_default_epochs": openai_default_epochs(train),
                "usd_openai_default_epochs": estimate_training_cost(
                    training_tokens, openai_default_epochs(train)
                ),
            },
        }


def dataset_stats(
    train: Sequence[Example],
    held_out: Sequence[Example],
    *,
    tokenizer: Any = None,
    epochs: int = 3,
    max_length: int | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """:class:`StatsCollector`'s result for two lists of examples."""
    collector = StatsCollector(tokenizer=tokenizer, model=model)
    for split, examples in (("train", train), ("eval", held_out)):
        for example in examples:
            collector.add(split, example)
    return collector.result(epochs=epochs, max_length=max_length)


def _intent(example: Example) -> str:
    intent = example.metadata.get("intent")
    return str(intent) if intent is not None else "(none)"


def token_histogram(values: Sequence[int]) -> dict[str, int]:
    """Examples per token bucket, doubling from 64: ``{"<=64": 3, "65-128": 10, ...}``."""
    buckets: Counter[int] = Counter()
    for value in values:
        upper = 64
        while value > upper:
            upper *= 2
        buckets[upper] += 1
    return {
        ("<=64" if upper == 64 else f"{upper // 2 + 1}-{upper}"): buckets[upper]
        for upper in sorted(buckets)
    }


def _summary(values: list[int]) -> dict[str, float | int]:
    if not values:
        return {"total": 0, "mean": 0.0, "max": 0, "p95": 0}
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "total": sum(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "max": ordered[-1],
        "p95": p95,
    }
