"""Near-duplicate removal (MinHash LSH) and per-category caps, after exact deduplication.

Two examples are near-duplicates when their prompts (the turns before the answer, without the
system message, which is usually the same everywhere) and their answers both have word-shingle
sets with an estimated Jaccard similarity at or above ``curate.near_dup_threshold``: the same
request answered the same way, with trivial changes. Rephrasings that share an answer are kept
(the split keeps them on one side), and so are templated prompts with different answers.

Examples are visited best-rewarded first (their *position*). A candidate whose prompt and answer
are both within the threshold of an earlier kept one joins that example's cluster and is dropped.
So each cluster keeps its best-rewarded member and no two kept examples are near-duplicates,
which also means no near-duplicate pair can straddle train and eval.

The index is compact so a million examples fit in memory: signatures are computed in batches
with numpy (one matrix product per batch, not one object per example), and each LSH band (band
count and width from datasketch's ``MinHashLSH`` for the threshold) is one ``int64`` key per
example. Each band is sorted once to link every example to the previous one in its bucket;
only an example with such a link is compared, against the kept ones in its buckets. Prompt
signatures are read through a callable, so a streamed build keeps them in a file on disk; answer
signatures are made only for compared pairs.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from tuneloop.curate.select import Example

SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+")
_SEED = 1
# Multipliers folding a word window's hashes into a shingle hash (and a band's rows into a key).
_FOLD = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)

_PAD = (0,) * SHINGLE_WORDS

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


def prompt_words(example: Example) -> list[str]:
    """Lower-cased words of the prompt turns (system messages left out)."""
    words: list[str] = []
    for message in example.prompt:
        if not isinstance(message, dict) or message.get("role") == "system":
            continue
        content = message.get("content")
        if isinstance(content, str):
            words.extend(_WORD.findall(content.lower()))
    return words


def answer_words(example: Example) -> list[str]:
    """Lower-cased words of the answer."""
    return _WORD.findall(example.target.lower())


def shingles(example: Example, size: int = SHINGLE_WORDS) -> set[bytes]:
    """Word ``size``-grams of the lower-cased prompt turns (system messages left out)."""
    return _grams(prompt_words(example), size)


def answer_shingles(example: Example, size: int = SHINGLE_WORDS) -> set[bytes]:
    """Word ``size``-grams of the lower-cased answer."""
    return _grams(answer_words(example), size)


def _grams(words: list[str], size: int) -> set[bytes]:
    if len(words) < size:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


class MinHasher:
    """MinHash signatures of word-shingle sets, many at a time (multiply-shift hashing)."""

    def __init__(self, permutations: int) -> None:
        rng = np.random.RandomState(_SEED)
        self.permutations = permutations
        self.a = rng.randint(1, 2**62, size=permutations, dtype=np.uint64) * 2 + 1
        self.b = rng.randint(0, 2**62, size=permutations, dtype=np.uint64)

    def signatures(self, word_lists: Sequence[list[str]]) -> np.ndarray:
        """``(len(word_lists), permutations)`` uint32 signatures, in the given order."""
        if not word_lists:
            return np.zeros((0, self.permutations), dtype=np.uint32)
        # One flat array of word hashes, each list followed by zeros so that a list of fewer
        # than three words still makes one shingle (of the words it has).
        flat: list[int] = []
        for words in word_lists:
            flat.extend([zlib.crc32(word.encode()) for word in words])
            flat.extend(_PAD)
        hashes = np.array(flat, dtype=np.uint64)
        lengths = np.array([len(words) for words in word_lists], dtype=np.int64)
        list_starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1] + len(_PAD), out=list_starts[1:])
        windows = np.maximum(lengths - (SHINGLE_WORDS - 1), 1)
        window_starts = np.zeros(len(windows), dtype=np.int64)
        np.cumsum(windows[:-1], out=window_starts[1:])
        starts = np.repeat(list_starts - window_starts, windows) + np.arange(int(windows.sum()))
        shingles = hashes[starts] * _FOLD[0]
        for offset in range(1, SHINGLE_WORDS):
            shingles += hashes[starts + offset] * _FOLD[offset]
        values = shingles[:, None] * self.a + self.b  # wraps mod 2**64
        return np.minimum.reduceat(values >> np.uint64(32), window_starts, axis=0).astype(np.uint32)


def lsh_shape(threshold: float, permutations: int) -> tuple[int, int]:
    """``(bands, rows)`` for the threshold, as datasketch's ``MinHashLSH`` chooses them."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=permutations)
    return lsh.b, lsh.r


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(n, bands)`` int64: one key per band of each signature."""
    keys = np.zeros((len(signatures), bands), dtype=np.uint64)
    wide = signatures.astype(np.uint64)
    for band in range(bands):
        for row in range(rows):
            column = wide[:, band * rows + row]
            keys[:, band] = keys[:, band] * _FOLD[0] + (column ^ (column >> np.uint64(7)))
    return keys.view(np.int64)


def near_duplicates(
    keys: np.ndarray,
    prompt_signature: Callable[[int], np.ndarray],
    answer_signatures: Callable[[list[int]], np.ndarray],
    *,
    threshold: float,
) -> np.ndarray:
    """For examples in position order (best first): ``-1`` when kept, else the position of the
    earliest kept example it nearly duplicates. ``keys`` are :func:`band_keys` by position;
    ``answer_signatures`` signs the answers of a batch of positions (only those sharing a
    bucket are ever asked for)."""
    count = len(keys)
    verdict = np.full(count, -1, dtype=np.int64)
    if count < 2:
        return verdict
    previous = np.full(keys.shape, -1, dtype=np.int32)  # the previous position in each bucket
    positions = np.arange(count, dtype=np.int32)
    for band in range(keys.shape[1]):
        order = np.lexsort((positions, keys[:, band]))
        column = keys[order, band]
        same = np.flatnonzero(column[1:] == column[:-1]) + 1
        previous[order[same], band] = order[same - 1]
    linked = (previous >= 0).any(axis=1)
    involved = np.union1d(np.flatnonzero(linked), previous[previous >= 0]).tolist()
    where = {position: index for index, position in enumerate(involved)}
    answers: dict[int, np.ndarray] = {}

    def answer_of(position: int) -> np.ndarray:
        if position not in answers:  # sign the next batch of involved positions at once
            start = where[position]
            batch = [p for p in involved[start : start + 1000] if p not in answers]
            answers.update(zip(batch, answer_signatures(batch), strict=True))
        return answers[position]

    for position in np.flatnonzero(linked).tolist():
        candidates: set[int] = set()
        for band in range(keys.shape[1]):
            other = int(previous[position, band])
            while other >= 0:
                if verdict[other] < 0:
                    candidates.add(other)
                other = int(previous[other, band])
        if not candidates:
            continue
        prompt = prompt_signature(position)
        for other in sorted(candidates):
            if np.count_nonzero(prompt == prompt_signature(other)) >= threshold * len(
                prompt
            ) and np.count_nonzero(answer_of(position) == answer_of(other)) >= threshold * len(
                prompt
            ):
                verdict[position] = other
                break
        if verdict[position] >= 0:
            answers.pop(position, None)  # a dropped example is never a candidate again
    return verdict


def remove_near_copies(
    candidates: Sequence[Example],
    existing: Iterable[Example],
    *,
    threshold: float,
    permutations: int = 64,
) -> DedupResult:
    """``candidates`` less near-duplicates of each other and of ``existing``, which is streamed.

    The decisions are those of ``remove_near_duplicates`` over ``existing`` (ranked above every
    candidate, by content key) and ``candidates`` together, but of each existing example only its
    content key and two signatures (2 × ``permutations`` × 4 bytes) are held, never its text.
    """
    hasher = MinHasher(permutations)
    keys: list[bytes] = []
    prompt_parts: list[np.ndarray] = []
    answer_parts: list[np.ndarray] = []
    prompts_batch: list[list[str]] = []
    answers_batch: list[list[str]] = []

    def flush() -> None:
        if prompts_batch:
            prompt_parts.append(hasher.signatures(prompts_batch))
            answer_parts.append(hasher.signatures(answers_batch))
            prompts_batch.clear()
            answers_batch.clear()

    for example in existing:
        keys.append(bytes.fromhex(example.key))
        prompts_batch.append(prompt_words(example))
        answers_batch.append(answer_words(example))
        if len(prompts_batch) >= 2000:
            flush()
    flush()
    empty = np.zeros((0, permutations), dtype=np.uint32)
    by_key = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)
    stored_prompts = np.concatenate(prompt_parts)[by_key] if prompt_parts else empty
    stored_answers = np.concatenate(answer_parts)[by_key] if answer_parts else empty
    stored = len(by_key)
    order: list[int] = []
    seen: set[str] = set()
    for index in sorted(range(len(candidates)), key=lambda i: rank_key(candidates[i])):
        if candidates[index].interaction_id not in seen:
            seen.add(candidates[index].interaction_id)
            order.append(index)
    prompts = np.concatenate(
        [stored_prompts, hasher.signatures([prompt_words(candidates[i]) for i in order])]
    )

    def answers_of(positions: list[int]) -> np.ndarray:
        made = hasher.signatures(
            [answer_words(candidates[order[p - stored]]) for p in positions if p >= stored]
        )
        rows, fresh = [], iter(made)
        for position in positions:
            rows.append(stored_answers[position] if position < stored else next(fresh))
        return np.array(rows, dtype=np.uint32).reshape(len(positions), permutations)

    verdict = near_duplicates(
        band_keys(prompts, *lsh_shape(threshold, permutations)),
        lambda position: prompts[position],
        answers_of,
        threshold=threshold,
    )
    clusters: dict[str, list[str]] = defaultdict(list)
    keep: set[int] = set()
    for offset, index in enumerate(order):
        kept_by = int(verdict[stored + offset])
        if kept_by < 0:
            keep.add(index)
            continue
        name = (
            f"existing:{kept_by}"
            if kept_by < stored
            else candidates[order[kept_by - stored]].interaction_id
        )
        clusters[name].append(candidates[index].interaction_id)
    kept = [example for index, example in enumerate(candidates) if index in keep]
    return DedupResult(kept, sum(len(ids) for ids in clusters.values()), dict(clusters))


def rank_key(example: Example) -> tuple[float, str]:
    """The order near-dup and category caps visit examples in: best-rewarded first."""
    return (-_reward(example), example.key)


def remove_near_duplicates(
    examples: Sequence[Example], *, threshold: float, permutations: int = 64
) -> DedupResult:
    """Drop every example that is a near-duplicate of a better-rewarded kept one."""
    order: list[int] = []
    seen: set[str] = set()
    for index in sorted(range(len(examples)), key=lambda i: rank_key(examples[i])):
        if examples[index].interaction_id not in seen:  # the same interaction twice: once
            seen.add(examples[index].interaction_id)
            order.append(index)
    hasher = MinHasher(permutations)
    prompts = hasher.signatures([prompt_words(examples[i]) for i in order])
    verdict = near_duplicates(
        band_keys(prompts, *lsh_shape(threshold, permutations)),
        lambda position: prompts[position],
        lambda positions: hasher.signatures([answer_words(examples[order[p]]) for p in positions]),
        threshold=threshold,
    )
    clusters: dict[str, list[str]] = defaultdict(list)
    keep: set[int] = set()
    for position, index in enumerate(order):
        if verdict[position] < 0:
            keep.add(index)
        else:
            kept_id = examples[order[int(verdict[position])]].interaction_id
            clusters[kept_id].append(examples[index].interaction_id)
    kept = [example for index, example in enumerate(examples) if index in keep]
    return DedupResult(kept, int((verdict >= 0).sum()), dict(clusters))


def category_caps(
    categories: Iterable[str], *, max_per_category: int | None, balance: bool
) -> tuple[list[bool], Counter[str]]:
    """Which of the examples (given best-rewarded first, by category) stay under the cap
    (``balance``: the smallest category's size), and the drops per category."""
    listed = list(categories)
    sizes = Counter(listed)
    limit = max_per_category
    if balance and sizes:
        smallest = min(sizes.values())
        limit = smallest if limit is None else min(limit, smallest)
    if limit is None:
        return [True] * len(listed), Counter()
    taken: Counter[str] = Counter()
    flags = []
    for category in listed:
        taken[category] += 1
        flags.append(taken[category] <= limit)
    drops = Counter({c: n - limit for c, n in sizes.items() if n > limit})
    return flags, drops


def cap_categories(
    examples: Sequence[E], *, max_per_category: int | None, balance: bool
) -> tuple[list[E], Counter[str]]:
    """At most ``max_per_category`` per category (``balance``: the smallest category's size),
    keeping the best-rewarded; returns the kept (input order) and the drops per category."""
    order = sorted(range(len(examples)), key=lambda i: rank_key(examples[i]))
    flags, drops = category_caps(
        (examples[i].category for i in order), max_per_category=max_per_category, balance=balance
    )
    keep = {index for index, flag in zip(order, flags, strict=True) if flag}
    return [example for i, example in enumerate(examples) if i in keep], drops


def _reward(example: Example) -> float:
    return example.reward if example.reward is not None else 0.0
