"""Which captured interactions become training examples, and why the others did not.

Every dropped candidate is counted under a reason, so an empty or small dataset tells the user
which filter to relax instead of silently training on less.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, null, or_, select, true

from tuneloop.config import CurateConfig
from tuneloop.curate.validate import validate_example
from tuneloop.jsontext import dumps_canonical, parse_json
from tuneloop.store import Interaction, Store

Message = dict[str, Any]
# Keys of a chat message that the fine-tuning formats accept; anything else is capture metadata.
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "weight")
UNCATEGORISED = "(none)"
STREAM_BATCH = 2000
# The columns curation reads, streamed in batches (never whole ORM objects of the whole table).
STREAM_COLUMNS = (
    Interaction.id,
    Interaction.task,
    Interaction.source,
    Interaction.messages,
    Interaction.response,
    Interaction.metadata_.label("metadata_"),
    Interaction.reward,
    Interaction.quality,
    Interaction.valid_json,
    Interaction.corrected_response,
)

# Stable keys of the drop counter, with what each means and which knob relaxes it.
DROP_REASONS: dict[str, tuple[str, str]] = {
    "low_reward": ("reward below curate.min_reward", "--min-reward"),
    "low_quality": ("quality below curate.min_quality", "--min-quality"),
    "unrated": ("no feedback yet and curate.keep_unrated is off", "--keep-unrated"),
    "invalid_json": ("the response should be JSON but does not parse", ""),
    "duplicate": ("same prompt and target as an earlier example", ""),
}


@dataclass(frozen=True)
class Example:
    """One training example: prompt messages plus the assistant target, and its origin."""

    interaction_id: str
    messages: list[Message]
    category: str = UNCATEGORISED
    source: str = "app"
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    reward: float | None = None
    # The model's own answer when the user corrected it: the non-preferred side of a DPO pair.
    rejected: str | None = None

    @property
    def prompt(self) -> list[Message]:
        return self.messages[:-1]

    @property
    def target(self) -> str:
        content = self.messages[-1].get("content") if self.messages else None
        return content if isinstance(content, str) else ""

    @cached_property
    def prompt_hash(self) -> str:
        """Hash of the normalized prompt: the split key, so a prompt never lands in both splits."""
        return _sha256(_normalize(self.prompt))

    @cached_property
    def target_hash(self) -> str:
        """Hash of the answer, JSON compared by value: the same answer never straddles the split."""
        parsed = parse_json(self.target)
        text = dumps_canonical(parsed.value) if parsed.ok else " ".join(self.target.split())
        return _sha256(text)

    @cached_property
    def key(self) -> str:
        """Hash of the normalized prompt and target: equal keys are exact duplicates."""
        return _sha256(_normalize(self.messages))

    def record(self) -> dict[str, Any]:
        """The line written to the JSONL files: only what the fine-tuning formats accept."""
        return {"messages": self.messages}


# A per-example step run before validation and dedup (PII redaction is the first planned one).
# It returns the changed example, or None to drop it; drops are counted under the function name.
Transform = Callable[[Example], Example | None]


@dataclass
class Selection:
    """Kept examples (sorted by content key, so exports are byte-stable) and why others went."""

    examples: list[Example]
    candidates: int
    drop_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def dropped(self) -> int:
        return sum(self.drop_reasons.values())

    def describe_drops(self) -> str:
        """``"reward below curate.min_reward: 3 (relax with --min-reward), ..."`` for messages."""
        parts = []
        for reason, count in self.drop_reasons.most_common():
            text, knob = DROP_REASONS.get(reason, (reason, ""))
            parts.append(f"{text}: {count}" + (f" (relax with {knob})" if knob else ""))
        return "; ".join(parts) or "nothing dropped"


def select_examples(
    store: Store,
    config: CurateConfig,
    *,
    task: str,
    transforms: Sequence[Transform] = (),
    progress: Callable[[int], None] | None = None,
) -> Selection:
    """Candidates of ``task`` that pass the reward/quality filters, valid and deduplicated.

    Rated interactions (with feedback, so a reward) need ``reward >= min_reward`` and
    ``quality >= min_quality``. Synthetic interactions need no feedback: the synth stage stores
    only those that passed its validation gate. Other unrated ones are kept only with
    ``keep_unrated``. The target is the user's ``corrected_response`` when there is one, else the
    ``response``, which must not be broken JSON (``valid_json`` False, set by capture).
    """
    drops: Counter[str] = Counter()
    kept: dict[str, Example] = {}
    for example in iter_selected(
        store, config, task=task, drops=drops, transforms=transforms, progress=progress
    ):
        key = example.key
        if key in kept:
            drops["duplicate"] += 1
            if _reward(example) > _reward(kept[key]):  # keep the best-rewarded copy
                kept[key] = example
            continue
        kept[key] = example
    examples = [kept[key] for key in sorted(kept)]
    candidates = drops.pop(CANDIDATES)
    return Selection(examples=examples, candidates=candidates, drop_reasons=drops)


CANDIDATES = "\x00candidates"  # a key of the drop counter that counts every candidate


def iter_selected(
    store: Store,
    config: CurateConfig,
    *,
    task: str,
    drops: Counter[str],
    transforms: Sequence[Transform] = (),
    progress: Callable[[int], None] | None = None,
) -> Iterator[Example]:
    """The task's examples that pass the filters, transforms and validation, in capture order
    (exact duplicates included); counts drops in ``drops`` and all candidates under
    ``CANDIDATES``.

    The reward, quality and rating filters run in SQL: one grouped count of what they drop,
    then a batched query of only what they keep.
    """
    reason = _sql_filter_reason(config)
    scope = Interaction.task == task
    with store.session() as session:
        for name, count in session.execute(
            select(reason, func.count()).where(scope, reason.is_not(None)).group_by(reason)
        ):
            drops[name] += count
    candidates = sum(drops.values())
    drops[CANDIDATES] += 0
    query = (
        select(*STREAM_COLUMNS)
        .where(scope, reason.is_(None))
        .order_by(Interaction.created_at, Interaction.id)
        .execution_options(yield_per=STREAM_BATCH)
    )
    with store.session() as session:
        for row in session.execute(query):
            candidates += 1
            if progress is not None and candidates % STREAM_BATCH == 0:
                progress(candidates)
            why = filter_reason(row, config)  # what SQL cannot tell (a blank correction)
            if why:
                drops[why] += 1
                continue
            example = _apply(transforms, example_from_interaction(row), drops)
            if example is None:
                continue
            problems = validate_example(example.record())
            if problems:
                drops[f"invalid: {problems[0]}"] += 1
                continue
            yield example
    drops[CANDIDATES] = candidates
    if progress is not None:
        progress(candidates)


def _sql_filter_reason(config: CurateConfig) -> Any:
    """``filter_reason``'s rating, reward and quality rules as a SQL expression (NULL: kept)."""
    rules: list[tuple[Any, str]] = []
    if not config.keep_unrated:
        rules.append(
            (and_(Interaction.reward.is_(None), Interaction.source != "synthetic"), "unrated")
        )
    rules.append((Interaction.reward < config.min_reward, "low_reward"))
    rules.append(
        (
            and_(Interaction.reward.is_not(None), Interaction.quality < config.min_quality),
            "low_quality",
        )
    )
    return case(*rules, else_=null())


def _reward(example: Example) -> float:
    return example.reward if example.reward is not None else float("-inf")


def stream_examples(
    store: Store,
    config: CurateConfig,
    *,
    task: str,
    exclude_metadata: Mapping[str, str] | None = None,
    batch: int = STREAM_BATCH,
) -> Iterator[Example]:
    """The valid examples of ``task`` that pass the filters, read ``batch`` rows at a time.

    Unlike ``select_examples`` nothing is held: the filters (and ``exclude_metadata``, rows whose
    metadata has one of these values) narrow the query in SQL, ``filter_reason`` and validation
    decide each row, and exact duplicates come as often as they are stored.
    """
    excluded = dict(exclude_metadata or {})
    query = select(*STREAM_COLUMNS).where(Interaction.task == task, filter_clause(config))
    for key, value in excluded.items():
        field = Interaction.metadata_[key].as_string()
        query = query.where(or_(field.is_(None), field != value))
    query = query.order_by(Interaction.created_at, Interaction.id).execution_options(
        yield_per=batch
    )
    with store.session() as session:
        for row in session.execute(query):
            metadata = row.metadata_ if isinstance(row.metadata_, dict) else {}
            if filter_reason(row, config) or any(
                metadata.get(key) == value for key, value in excluded.items()
            ):
                continue
            example = example_from_interaction(row)
            if not validate_example(example.record()):
                yield example


def filter_clause(config: CurateConfig) -> ColumnElement[bool]:
    """The rows ``filter_reason`` keeps, as SQL (the same rules as the counts of what the
    filters drop), and not invalid JSON unless corrected: a stream reads only likely rows."""
    valid = or_(
        Interaction.valid_json.is_(None),
        Interaction.valid_json == true(),
        Interaction.corrected_response.is_not(None),
    )
    return and_(_sql_filter_reason(config).is_(None), valid)


def _apply(
    transforms: Sequence[Transform], example: Example, drops: Counter[str]
) -> Example | None:
    """Run the transforms in order; a None result drops the example under the transform's name."""
    for transform in transforms:
        result = transform(example)
        if result is None:
            drops[getattr(transform, "__name__", "transform")] += 1
            return None
        example = result
    return example


def filter_reason(row: Any, config: CurateConfig) -> str | None:
    """Why the filters drop this interaction (a ``DROP_REASONS`` key), or None to keep it.

    "Rated" means it has feedback, i.e. a reward: capture sets ``quality`` on every row (valid
    JSON alone scores 3), so quality cannot tell rated from unrated.
    """
    if row.reward is None:
        if row.source != "synthetic" and not config.keep_unrated:
            return "unrated"
    else:
        if row.reward < config.min_reward:
            return "low_reward"
        if row.quality is not None and row.quality < config.min_quality:
            return "low_quality"
    if row.valid_json is False and not _has_correction(row):
        return "invalid_json"
    return None


def _has_correction(row: Any) -> bool:
    return row.corrected_response is not None and bool(row.corrected_response.strip())


def example_from_interaction(row: Any) -> Example:
    """Prompt messages + the target as the last assistant message.

    The coverage category is ``metadata.category``, else ``metadata.intent``, else the task.
    """
    prompt = row.messages if isinstance(row.messages, list) else []
    messages = [_clean_message(message) for message in prompt]
    target = row.corrected_response if _has_correction(row) else row.response
    messages.append({"role": "assistant", "content": target})
    metadata = row.metadata_ if isinstance(row.metadata_, dict) else {}
    category = metadata.get("category") or metadata.get("intent") or row.task
    corrected = _has_correction(row)
    return Example(
        row.id,
        messages,
        category=str(category),
        source=row.source,
        metadata=dict(metadata),
        reward=row.reward,
        rejected=row.response if corrected and row.response != target else None,
    )


def _clean_message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message  # validation reports it
    return {key: message[key] for key in MESSAGE_KEYS if key in message}


def _normalize(messages: list[Message]) -> str:
    """Roles and contents with whitespace collapsed: formatting noise is not a different example."""
    normalized = []
    for message in messages:
        if not isinstance(message, dict):
            normalized.append(message)
            continue
        content = message.get("content")
        if isinstance(content, str):
            content = " ".join(content.split())
        normalized.append([message.get("role"), content])
    return json.dumps(normalized, sort_keys=True, ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def count_candidates(store: Store, task: str) -> int:
    """How many interactions ``task`` has (a progress bar's total)."""
    with store.session() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Interaction).where(Interaction.task == task)
            )
            or 0
        )
