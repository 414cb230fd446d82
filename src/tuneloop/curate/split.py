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
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

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


def key_hash(key: str) -> int:
    """A 63-bit integer for a group key: the split keeps integers, never the keys themselves."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


@dataclass
class SplitKeys:
    """What the split needs of each example, as compact arrays (a million fit in memory).

    ``answers`` holds each answer hash (hex, as ``Example.target_hash``): the smallest one of a
    group names it, so a group keeps its side across versions. ``prompts`` and ``extras`` are
    :func:`key_hash` values (``extras`` -1 where the example has no extra group key), and
    ``categories`` are codes ordered like the category names.
    """

    prompts: np.ndarray
    answers: np.ndarray
    extras: np.ndarray
    categories: np.ndarray


class KeyCollector:
    """Collects :class:`SplitKeys` one example at a time."""

    def __init__(self, split_group: str) -> None:
        self.split_group = split_group
        self.prompts: array[int] = array("q")
        self.extras: array[int] = array("q")
        self.answers = bytearray()
        self.categories: list[int] = []
        self.category_codes: dict[str, int] = {}

    def add(self, example: Example) -> None:
        self.prompts.append(int(example.prompt_hash[:16], 16) >> 1)  # already a sha256
        self.answers += bytes.fromhex(example.target_hash)
        extra = group_key(example, self.split_group)
        self.extras.append(-1 if extra is None else key_hash(extra))
        code = self.category_codes.setdefault(example.category, len(self.category_codes))
        self.categories.append(code)

    def keys(self) -> SplitKeys:
        names = sorted(self.category_codes)
        rank = np.zeros(len(names), dtype=np.int32)
        for order, name in enumerate(names):
            rank[self.category_codes[name]] = order
        codes = np.array(self.categories, dtype=np.int32)
        return SplitKeys(
            prompts=np.frombuffer(self.prompts, dtype=np.int64) if self.prompts else _EMPTY,
            answers=np.frombuffer(bytes(self.answers), dtype="V32"),
            extras=np.frombuffer(self.extras, dtype=np.int64) if self.extras else _EMPTY,
            categories=rank[codes] if len(codes) else codes,
        )


_EMPTY = np.zeros(0, dtype=np.int64)


def _components(edges_a: np.ndarray, edges_b: np.ndarray, nodes: int) -> np.ndarray:
    """A connected-component label per node (scipy's graph search: arrays, no Python objects
    per node, so a million examples' keys stay a few tens of MB)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(len(edges_a), dtype=np.int8), (edges_a, edges_b)), shape=(nodes, nodes)
    )
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def split_flags(
    keys: SplitKeys, *, eval_fraction: float, seed: str, stratify: bool = True
) -> np.ndarray:
    """A boolean per example, True for eval; no prompt, answer or group key is in both splits.

    With at least two groups and ``eval_fraction > 0``, each split gets at least one group: the
    train group closest to the eval side moves to eval (or the reverse). This is the only case
    where a group's side can differ between versions, and only for tiny datasets. When everything
    is one group, it stays in train.
    """
    count = len(keys.prompts)
    if count == 0:
        return np.zeros(0, dtype=bool)
    # Nodes: distinct answers (sorted, so the smallest node of a group is its smallest answer),
    # then distinct prompts, then distinct extra keys; each example links its nodes.
    answers, answer_node = np.unique(keys.answers, return_inverse=True)
    _, prompt_node = np.unique(keys.prompts, return_inverse=True)
    prompt_node = prompt_node + len(answers)
    has_extra = keys.extras >= 0
    _, extra_node = np.unique(keys.extras[has_extra], return_inverse=True)
    extra_node = extra_node + int(prompt_node.max()) + 1
    nodes = int(extra_node.max()) + 1 if len(extra_node) else int(prompt_node.max()) + 1
    labels = _components(
        np.concatenate([prompt_node, prompt_node[has_extra]]),
        np.concatenate([answer_node, extra_node]),
        nodes,
    )
    # A group is named by its smallest answer node (answers are sorted, so its smallest answer).
    smallest = np.full(int(labels.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, labels[answer_node], answer_node)
    group_node = smallest[labels[answer_node]]
    names, group = np.unique(group_node, return_inverse=True)
    scores = np.array(
        [split_score(f"a:{answers[node].tobytes().hex()}", seed) for node in names.tolist()]
    )
    evals = scores < eval_fraction
    if len(names) == 1:
        evals[:] = False  # one group cannot be in both splits; training needs it
    elif eval_fraction > 0:
        # Ties in score are broken by name; names are sorted, so by index.
        if not evals.any():
            evals[int(np.argmin(scores))] = True
        elif evals.all():
            evals[len(scores) - 1 - int(np.argmax(scores[::-1]))] = False
    if stratify and eval_fraction > 0:
        category = np.full(len(names), np.iinfo(np.int32).max, dtype=np.int32)
        np.minimum.at(category, group, keys.categories)
        _stratify(category, scores, evals)
    return np.asarray(evals[group], dtype=bool)


def _stratify(category: np.ndarray, scores: np.ndarray, evals: np.ndarray) -> None:
    """Every category with two or more groups gets at least one on each side.

    The hash decides as before; only a category left entirely on one side moves the group
    closest to the other side, so sides stay stable as data grows (a move happens only while a
    category is tiny) and a rare category is never missing from evaluation. A group's category
    is the smallest of its examples'.
    """
    order = np.lexsort((np.arange(len(scores)), scores, category))
    bounds = np.flatnonzero(np.diff(category[order])) + 1
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        held = evals[members]
        if not held.any():
            evals[members[0]] = True  # the lowest score (then name) goes to eval
        elif held.all():
            evals[members[-1]] = False


def split_examples(
    examples: Sequence[E],
    *,
    eval_fraction: float,
    seed: str,
    split_group: str = ANSWER,
    stratify: bool = True,
) -> tuple[list[E], list[E]]:
    """``(train, eval)`` in the input order; see :func:`split_flags`."""
    collector = KeyCollector(split_group)
    for example in examples:
        collector.add(example)
    flags = split_flags(
        collector.keys(), eval_fraction=eval_fraction, seed=seed, stratify=stratify
    ).tolist()
    train = [example for example, held in zip(examples, flags, strict=True) if not held]
    held_out = [example for example, held in zip(examples, flags, strict=True) if held]
    return train, held_out
