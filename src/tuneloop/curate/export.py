"""Writing a dataset version: byte-stable JSONL files, their content hash, and a manifest.

The JSONL files are in the OpenAI/Together chat format (``{"messages": [...]}`` per line), so
they can be uploaded to a hosted fine-tuning job as they are. Keys are sorted and lines end in
``\\n`` so the same examples always give the same bytes and the same content hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
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


def write_split_files(
    directory: Path, train: Sequence[Example], held_out: Sequence[Example]
) -> str:
    """Write ``train.jsonl``, ``eval.jsonl`` and the interaction ids; return the content hash."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, examples in (("train", train), ("eval", held_out)):
        text = "".join(jsonl_line(example.record()) for example in examples)
        (directory / SPLIT_FILES[split]).write_text(text, encoding="utf-8", newline="\n")
    ids = {"train": [e.interaction_id for e in train], "eval": [e.interaction_id for e in held_out]}
    (directory / IDS_FILE).write_text(json.dumps(ids, indent=1) + "\n", encoding="utf-8")
    return content_hash(directory)


def pair_record(example: Example) -> dict[str, Any]:
    """A corrected example as an OpenAI DPO line: the user's version preferred to the model's."""
    return {
        "input": {"messages": example.prompt},
        "preferred_output": [{"role": "assistant", "content": example.target}],
        "non_preferred_output": [{"role": "assistant", "content": example.rejected or ""}],
    }


def write_pair_files(
    directory: Path, train: Sequence[Example], held_out: Sequence[Example]
) -> None:
    for split, examples in (("train", train), ("eval", held_out)):
        text = "".join(jsonl_line(pair_record(e)) for e in examples if e.rejected)
        (directory / PAIR_FILES[split]).write_text(text, encoding="utf-8", newline="\n")


def content_hash(directory: Path) -> str:
    """sha256 over the train and eval bytes (with file names, so a line moving splits counts)."""
    digest = hashlib.sha256()
    for name in (TRAIN_FILE, EVAL_FILE):
        digest.update(name.encode() + b"\x00")
        digest.update((directory / name).read_bytes())
        digest.update(b"\x00")
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (directory / MANIFEST_FILE).write_text(text, encoding="utf-8", newline="\n")


def dataset_stats(
    train: Sequence[Example],
    held_out: Sequence[Example],
    *,
    tokenizer: Any = None,
    epochs: int = 3,
    max_length: int | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Counts, token stats and histogram, coverage by category, intent and source, and a
    training cost estimate per provider (at ``epochs``, and at OpenAI's default epochs)."""
    counter = TokenCounter(tokenizer, model=model)
    tokens = {
        "train": [counter.count_example(e.messages) for e in train],
        "eval": [counter.count_example(e.messages) for e in held_out],
    }
    token_stats: dict[str, Any] = {split: _summary(values) for split, values in tokens.items()}
    token_stats["method"] = counter.method
    token_stats["estimated"] = counter.estimated
    token_stats["histogram"] = token_histogram([*tokens["train"], *tokens["eval"]])
    if max_length is not None:
        token_stats["max_length"] = max_length
        token_stats["over_max_length"] = sum(
            1 for values in tokens.values() for value in values if value > max_length
        )
    training_tokens = sum(tokens["train"])
    return {
        "counts": {"train": len(train), "eval": len(held_out), "total": len(train) + len(held_out)},
        "tokens": token_stats,
        "coverage": {
            "train": _counts(e.category for e in train),
            "eval": _counts(e.category for e in held_out),
        },
        "coverage_by_intent": {
            "train": _counts(_intent(e) for e in train),
            "eval": _counts(_intent(e) for e in held_out),
        },
        "sources": _counts(e.source for e in (*train, *held_out)),
        "cost_estimate": {
            "training_tokens": training_tokens,
            "epochs": epochs,
            "estimated_tokens": counter.estimated,
            "usd": estimate_training_cost(training_tokens, epochs),
            "openai_default_epochs": openai_default_epochs(len(train)),
            "usd_openai_default_epochs": estimate_training_cost(
                training_tokens, openai_default_epochs(len(train))
            ),
        },
    }


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


def _counts(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))
