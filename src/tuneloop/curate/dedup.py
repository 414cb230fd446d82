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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from tuneloop.curate.select import Example

SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+")

if TYPE_CHECKING:
    from datasketch import MinHash

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


class NearDuplicateIndex:
    """The kept examples' prompt signatures in a MinHash LSH index: the one near-duplicate rule.

    ``near`` names the kept examples whose prompt and answer are both within the threshold of a
    candidate's; answer signatures are asked for only then (``answer_of`` for a kept one), so a
    caller can make them on demand or keep them compactly.
    """

    def __init__(self, threshold: float, permutations: int = 64) -> None:
        from datasketch import MinHash, MinHashLSH

        self.threshold = threshold
        self.permutations = permutations
        self.lsh = MinHashLSH(threshold=threshold, num_perm=permutations)
        template = MinHash(num_perm=permutations)
        self._seeds, self._scheme = template.permutations, template.scheme  # made once
        self.prompts: dict[str, MinHash] = {}  # kept id -> prompt signature

    def signature(self, parts: set[bytes]) -> MinHash:
        from datasketch import MinHash

        signature = MinHash(
            num_perm=self.permutations, permutations=self._seeds, scheme=self._scheme
        )
        signature.update_batch(list(parts))
        return signature

    def restore(self, hashvalues: Any) -> MinHash:
        """A signature from its bare hash values (what a streamed pass keeps per example)."""
        from datasketch import MinHash

        return MinHash(
            num_perm=self.permutations,
            hashvalues=hashvalues,
            permutations=self._seeds,
            scheme=self._scheme,
        )

    def near(
        self,
        prompt: MinHash,
        answer: Callable[[], MinHash],
        answer_of: Callable[[str], MinHash],
    ) -> list[str]:
        return [
            other
            for other in self.lsh.query(prompt)
            if prompt.jaccard(self.prompts[other]) >= self.threshold
            and answer().jaccard(answer_of(other)) >= self.threshold
        ]

    def keep(self, key: str, prompt: MinHash) -> bool:
        """Index a kept example; False when that id is indexed already (nothing new)."""
        if key in self.prompts:
            return False
        self.lsh.insert(key, prompt)
        self.prompts[key] = prompt
        return True


def remove_near_duplicates(
    examples: Sequence[Example], *, threshold: float, permutations: int = 64
) -> DedupResult:
    """Drop every example that is a near-duplicate of a better-rewarded kept one."""
    order = sorted(
        range(len(examples)),
        key=lambda i: (-_reward(examples[i]), examples[i].key),
    )
    index = NearDuplicateIndex(threshold, permutations)
    positions: dict[str, int] = {}  # kept id -> position
    answers: dict[int, MinHash] = {}  # made only when a prompt is near enough to need one
    keep = [False] * len(examples)
    clusters: dict[str, list[str]] = defaultdict(list)
    dropped = 0

    def answer_at(position: int) -> MinHash:
        if position not in answers:
            answers[position] = index.signature(answer_shingles(examples[position]))
        return answers[position]

    for position in order:
        example = examples[position]
        prompt = index.signature(shingles(example))
        near = index.near(
            prompt, partial(answer_at, position), lambda other: answer_at(positions[other])
        )
        answers.pop(position, None)
        if near:
            dropped += 1
            clusters[min(near)].append(example.interaction_id)
            continue
        if index.keep(example.interaction_id, prompt):  # the same interaction twice: skip
            positions[example.interaction_id] = position
            keep[position] = True
    kept = [example for example, flag in zip(examples, keep, strict=True) if flag]
    return DedupResult(kept, dropped, dict(clusters))


def remove_near_copies(
    candidates: Sequence[Example],
    existing: Iterable[Example],
    *,
    threshold: float,
    permutations: int = 64,
) -> DedupResult:
    """``candidates`` less near-duplicates of each other and of ``existing``, which is streamed.

    The decisions are those of ``remove_near_duplicates`` over ``existing`` (ranked above every
    candidate) and ``candidates`` together, but of each existing example only its content key and
    two signatures' hash values (2 × ``permutations`` × 4 bytes) are held, never its text.
    """
    index = NearDuplicateIndex(threshold, permutations)
    streamed = []
    for example in existing:
        streamed.append(
            (
                bytes.fromhex(example.key),
                index.signature(shingles(example)).hashvalues,
                index.signature(answer_shingles(example)).hashvalues,
            )
        )
    streamed.sort(key=lambda row: row[0])
    answers: dict[str, MinHash] = {}  # kept id -> answer signature

    for number, (_, prompt_values, answer_values) in enumerate(streamed):
        prompt, answer = index.restore(prompt_values), index.restore(answer_values)
        key = f"existing:{number}"
        if not index.near(prompt, lambda: answer, answers.__getitem__):  # noqa: B023
            index.keep(key, prompt)
            answers[key] = answer
    del streamed

    order = sorted(
        range(len(candidates)), key=lambda i: (-_reward(candidates[i]), candidates[i].key)
    )
    keep = [False] * len(candidates)
    clusters: dict[str, list[str]] = defaultdict(list)
    dropped = 0
    for position in order:
        example = candidates[position]
        prompt = index.signature(shingles(example))
        made: list[MinHash] = []

        def answer_now(example: Example = example, made: list[MinHash] = made) -> MinHash:
            if not made:
                made.append(index.signature(answer_shingles(example)))
            return made[0]

        near = index.near(prompt, answer_now, answers.__getitem__)
        if near:
            dropped += 1
            clusters[min(near)].append(example.interaction_id)
            continue
        if index.keep(example.interaction_id, prompt):
            answers[example.interaction_id] = answer_now()
            keep[position] = True
    kept = [example for example, flag in zip(candidates, keep, strict=True) if flag]
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
