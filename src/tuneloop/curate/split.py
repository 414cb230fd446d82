"""Deterministic train/eval split by group, so that evaluation measures learning, not recall.

Examples are joined into groups that must not straddle the split:

* examples with the same prompt (a request is never both trained on and evaluated),
* examples with the same answer (four phrasings of one request share one answer; an eval answer
  that also occurs in training would be recalled, not produced),
* and, optionally, examples with the same ``split_group`` key (``metadata:category,platform``
  keeps whole kinds of request out of training; ``metadata:request_id`` keeps retries together).

Each group goes to one side by hashing ``split_seed`` with the group's smallest key (instead of
shuffling), so a group keeps its side across dataset versions unless new data joins it to another.
The split is stratified by category: a category with two or more groups always has one on each
side (see ``_stratify``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from tuneloop.curate.select import Example

TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)
ANSWER = "answer"
PROMPT = "prompt"
METADATA_PREFIX = "metadata:"

E = TypeVar("E", bound=Example)


def split_score(key: str, seed: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the key."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key: str, seed: str, eval_fraction: float) -> str:
    """``"eval"`` for about ``eval_fraction`` of keys, ``"train"`` for the rest."""
    return EVAL if split_score(key, seed) < eval_fraction else TRAIN


def group_key(example: Example, split_group: str) -> str | None:
    """The example's configured group key (``None``: the group key adds nothing)."""
    if split_group == ANSWER:
        return f"a:{example.target_hash}"
    if split_group == PROMPT:
        return f"p:{example.prompt_hash}"
    fields = split_group.removeprefix(METADATA_PREFIX).split(",")
    values = [example.metadata.get(field.strip()) for field in fields]
    if all(value is None for value in values):
        return None  # no such metadata: the example is grouped by prompt and answer only
    return "m:" + "\x1f".join("" if value is None else str(value) for value in values)


class _Groups:
    """Union–find over keys: two examples sharing any key end up in one group."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:  # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, first: str, second: str) -> None:
        a, b = self.find(first), self.find(second)
        if a != b:
            # The smaller key names the group, so the name does not depend on input order.
            low, high = sorted((a, b))
            self.parent[high] = low


def split_examples(
    examples: Sequence[E],
    *,
    eval_fraction: float,
    seed: str,
    split_group: str = ANSWER,
    stratify: bool = True,
) -> tuple[list[E], list[E]]:
    """``(train, eval)`` in the input order; no prompt, answer or group key is in both.

    With at least two groups and ``eval_fraction > 0``, each split gets at least one group: the
    train group closest to the eval side moves to eval (or the reverse). This is the only case
    where a group's side can differ between versions, and only for tiny datasets. When everything
    is one group, it stays in train.
    """
    groups = _Groups()
    for example in examples:
        keys = [f"p:{example.prompt_hash}", f"a:{example.target_hash}"]
        extra = group_key(example, split_group)
        if extra is not None:
            keys.append(extra)
        for key in keys[1:]:
            groups.union(keys[0], key)
    names = {id(example): groups.find(f"p:{example.prompt_hash}") for example in examples}
    scores = {name: split_score(name, seed) for name in set(names.values())}
    eval_groups = {name for name, score in scores.items() if score < eval_fraction}
    train_groups = set(scores) - eval_groups
    if len(scores) == 1:
        eval_groups = set()  # one group cannot be in both splits; training needs it
    elif eval_fraction > 0:
        if not eval_groups:
            eval_groups.add(min(train_groups, key=lambda g: (scores[g], g)))
        elif not train_groups:
            eval_groups.discard(max(eval_groups, key=lambda g: (scores[g], g)))
    if stratify and eval_fraction > 0:
        _stratify(examples, names, scores, eval_groups)
    train = [example for example in examples if names[id(example)] not in eval_groups]
    held_out = [example for example in examples if names[id(example)] in eval_groups]
    return train, held_out


def _stratify(
    examples: Sequence[Example],
    names: dict[int, str],
    scores: dict[str, float],
    eval_groups: set[str],
) -> None:
    """Every category with two or more groups gets at least one on each side.

    The hash decides as before; only a category left entirely on one side moves the group
    closest to the other side, so sides stay stable as data grows (a move happens only while a
    category is tiny) and a rare category is never missing from evaluation.
    """
    category_groups: dict[str, set[str]] = {}
    group_category: dict[str, str] = {}
    for example in examples:
        group = names[id(example)]
        current = group_category.get(group)
        if current is None or example.category < current:
            group_category[group] = example.category
    for group, category in group_category.items():
        category_groups.setdefault(category, set()).add(group)
    for groups in category_groups.values():
        if len(groups) < 2:
            continue
        held = groups & eval_groups
        if not held:
            eval_groups.add(min(groups, key=lambda g: (scores[g], g)))
        elif held == groups:
            eval_groups.discard(max(groups, key=lambda g: (scores[g], g)))
