"""Near-duplicate removal (MinHash LSH) and per-category caps, after exact deduplication.

Two examples are near-duplicates when their prompts (the turns before the answer, without the
system message, which is usually the same everywhere) and their answers both have word-shingle
sets with an estimated Jaccard similarity at or above ``curate.near_dup_threshold``: the same
request answered the same way, with trivial changes. Rephrasings that share an answer are kept
(the split keeps them on one side), and so are templated prompts with different answers.

Examples are visited best-rewarded first. The LSH index holds the kept examples' prompt
signatures; a candidate whose prompt and answer are both within the threshold of a kept one
joins that example's cluster and is dropped. So each cluster keeps its best-rewarded member and
no two kept examples are near-duplicates, which also means no near-duplicate pair can straddle
train and eval. The clusters (kept id → dropped ids) are reported for the card.

Held in memory: the prompt signature of each kept example (``permutations`` × 8 bytes), the
answer signatures of those that met a near prompt, and datasketch's band index.
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
    return _grams(words, size)


def answer_shingles(example: Example, size: int = SHINGLE_WORDS) -> set[bytes]:
    """Word ``size``-grams of the lower-cased answer."""
    return _grams(_WORD.findall(example.target.lower()), size)


def _grams(words: list[str], size: int) -> set[bytes]:
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
    prompts: dict[str, tuple[MinHash, int]] = {}  # kept id -> prompt signature, position
    answers: dict[int, MinHash] = {}  # made only when a prompt is near enough to need one
    keep = [False] * len(examples)
    clusters: dict[str, list[str]] = defaultdict(list)
    dropped = 0

    def signature_of(parts: set[bytes]) -> MinHash:
        signature = MinHash(num_perm=permutations, permutations=seeds, scheme=scheme)
        signature.update_batch(list(parts))
        return signature

    def answer_of(position: int) -> MinHash:
        if position not in answers:
            answers[position] = signature_of(answer_shingles(examples[position]))
        return answers[position]

    for index in order:
        example = examples[index]
        prompt = signature_of(shingles(example))
        near = [
            other
            for other in lsh.query(prompt)
            if prompt.jaccard(prompts[other][0]) >= threshold
            and answer_of(index).jaccard(answer_of(prompts[other][1])) >= threshold
        ]
        answers.pop(index, None)
        if near:
            dropped += 1
            clusters[min(near)].append(example.interaction_id)
            continue
        key = example.interaction_id
        if key in prompts:  # the same interaction twice: nothing new to index
            continue
        lsh.insert(key, prompt)
        prompts[key] = (prompt, index)
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
