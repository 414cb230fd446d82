"""Near-duplicate removal (MinHash LSH) and per-category caps, after exact deduplication.

Two examples whose prompts (the turns before the answer, without the system message, which is
usually the same everywhere) have word-shingle sets with an estimated Jaccard similarity at or
above ``curate.near_dup_threshold`` are near-duplicates: the same request asked again with
trivial changes. Rephrasings that share an answer are not (the split keeps those together).
Examples are visited best-rewarded first; one
whose LSH candidates include a kept example at or above the threshold joins that example's
cluster and is dropped. So each cluster keeps its best-rewarded member, and no two kept examples
are near-duplicates, which also means no near-duplicate pair can straddle train and eval. The
cluster id (the kept example's id) is recorded for the card.

Only the kept examples' signatures are held (``permutations`` × 8 bytes each) plus datasketch's
band index.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tuneloop.curate.select import Example

SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+")

E = TypeVar("E", bound=Example)


@dataclass
class DedupResult:
    """Kept examples (input order), and how many near-duplicates each kept one absorbed."""

    kept: list[Example]
    dropped: int = 0
    clusters: dict[str, list[str]] = field(default_factory=dict)  # kept id -> dropped ids

    @property
    def largest_cluster(self) -> int:
        return 1 + max((len(ids) for ids in self.clusters.values()), default=0)


def shingles(example: Example, size: int = SHINGLE_WORDS) -> set[bytes]:
    """Word ``size``-grams of the lower-cased prompt turns (system messages left out)."""
    words = []
    for message in example.prompt:
        if not isinstance(message, dict) or message.get("role") == "system":
            continue
        content = message.get("content")
        if isinstance(content, str):
            words.extend(_WORD.findall(content.lower()))
    if len(words) < size:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


def remove_near_duplicates(
    examples: Sequence[Example], *, threshold: float, permutations: int = 64
) -> DedupResult:
    """Drop every example that is a near-duplicate of a better-rewarded kept one."""
    from datasketch import MinHash, MinHashLSH

    order = sorted(
        range(len(examples)),
        key=lambda i: (-_reward(examples[i]), examples[i].key),
    )
    lsh = MinHashLSH(threshold=threshold, num_perm=permutations)
    template = MinHash(num_perm=permutations)
    seeds, scheme = template.permutations, template.scheme  # made once, not per example
    signatures: dict[str, MinHash] = {}
    keep = [False] * len(examples)
    clusters: dict[str, list[str]] = defaultdict(list)
    dropped = 0
    for index in order:
        example = examples[index]
        signature = MinHash(num_perm=permutations, permutations=seeds, scheme=scheme)
        signature.update_batch(list(shingles(example)))
        near = [
            other
            for other in lsh.query(signature)
            if signature.jaccard(signatures[other]) >= threshold
        ]
        if near:
            dropped += 1
            clusters[min(near)].append(example.interaction_id)
            continue
        key = example.interaction_id
        if key in signatures:  # the same interaction twice: nothing new to index
            continue
        lsh.insert(key, signature)
        signatures[key] = signature
        keep[index] = True
    kept = [example for example, flag in zip(examples, keep, strict=True) if flag]
    return DedupResult(kept, dropped, dict(clusters))


def cap_categories(
    examples: Sequence[E], *, max_per_category: int | None, balance: bool
) -> tuple[list[E], Counter[str]]:
    """At most ``max_per_category`` per category (``balance``: the smallest category's size),
    keeping the best-rewarded; returns the kept (input order) and the drops per category."""
    by_category: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        by_category[example.category].append(index)
    limit = max_per_category
    if balance and by_category:
        smallest = min(len(indexes) for indexes in by_category.values())
        limit = smallest if limit is None else min(limit, smallest)
    if limit is None:
        return list(examples), Counter()
    keep: set[int] = set()
    drops: Counter[str] = Counter()
    for category, indexes in by_category.items():
        ranked = sorted(indexes, key=lambda i: (-_reward(examples[i]), examples[i].key))
        keep.update(ranked[:limit])
        if len(ranked) > limit:
            drops[category] = len(ranked) - limit
    return [example for i, example in enumerate(examples) if i in keep], drops


def _reward(example: Example) -> float:
    return example.reward if example.reward is not None else 0.0
