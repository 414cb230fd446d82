"""Deterministic train/eval split by prompt hash.

Hashing ``split_seed + prompt hash`` (instead of shuffling) keeps every prompt in the same split
across dataset versions, so a model is never evaluated on a prompt an earlier version trained on,
and examples sharing a prompt (say, two different accepted answers) never straddle the split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from tuneloop.curate.select import Example

TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)

E = TypeVar("E", bound=Example)


def split_score(prompt_hash: str, seed: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the prompt."""
    digest = hashlib.sha256(f"{seed}\x00{prompt_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(prompt_hash: str, seed: str, eval_fraction: float) -> str:
    """``"eval"`` for about ``eval_fraction`` of prompts, ``"train"`` for the rest."""
    return EVAL if split_score(prompt_hash, seed) < eval_fraction else TRAIN


def split_examples(
    examples: Sequence[E], *, eval_fraction: float, seed: str
) -> tuple[list[E], list[E]]:
    """``(train, eval)`` in the input order; no prompt is in both.

    With at least two distinct prompts and ``eval_fraction > 0``, each split gets at least one
    prompt: the train prompt closest to the eval side moves to eval (or the reverse). This is
    the only case where a prompt's split can differ between versions, and only for tiny datasets.
    Examples that all share one prompt stay together in train.
    """
    scores = {ex.prompt_hash: split_score(ex.prompt_hash, seed) for ex in examples}
    eval_prompts = {p for p, score in scores.items() if score < eval_fraction}
    train_prompts = set(scores) - eval_prompts
    if len(scores) == 1:
        eval_prompts = set()  # one prompt cannot be in both splits; training needs it
    elif eval_fraction > 0:
        if not eval_prompts:
            moved = min(train_prompts, key=lambda p: (scores[p], p))
            eval_prompts.add(moved)
        elif not train_prompts:
            moved = max(eval_prompts, key=lambda p: (scores[p], p))
            eval_prompts.discard(moved)
    train = [example for example in examples if example.prompt_hash not in eval_prompts]
    held_out = [example for example in examples if example.prompt_hash in eval_prompts]
    return train, held_out
