"""Prompt variation: new, realistic requests for answers we already have.

A student trained on a handful of prompt templates learns the templates, not the task. For each
existing example a provider is asked for several requests a real user might have written to get
exactly that answer, differing in wording, the order details come in, length, tone and which
details are spelled out; each becomes a new example with the original answer kept. Calls go
through the same answer cache as pipelines, so a re-run pays for nothing twice.

Sources: a dataset version (``dataset:NAME@vN``, its train split), a file in any format
``tuneloop.formats`` reads, or the store (``store:TASK``, the examples curation would select).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.errors import InputError
from tuneloop.jsontext import parse_json
from tuneloop.providers import ProviderError, RequestOptions, error_kind
from tuneloop.synth.cache import AnswerCache, CachedAnswer, request_key

if TYPE_CHECKING:
    from tuneloop.config import Config
    from tuneloop.providers import Provider

VARIATION_PROMPT = """\
Below is a request a user sent to an assistant and the answer they got.
Write {n} other requests that real users could have sent to get exactly this answer.
Make them differ from the original and from each other: other wording, details given in a
different order, short and long ones, casual and formal ones, some spelling out details the
original left implicit. Every request must still ask for everything the answer delivers.
Reply with only a JSON array of {n} strings.

Original request:
{request}

Answer:
{answer}
"""


@dataclass
class Variation:
    """One new example: a new request with the original answer, and where it came from."""

    messages: list[dict[str, Any]]
    parent: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariationReport:
    examples: list[Variation] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    cached: int = 0
    cost_usd: float = 0.0


def _user_text(messages: Sequence[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    return content if isinstance(content, str) else ""


def vary_prompts(
    provider: Provider,
    examples: Sequence[dict[str, Any]],
    *,
    per_example: int = 3,
    cache: AnswerCache | None = None,
    concurrency: int = 8,
    max_tokens: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VariationReport:
    """``per_example`` new requests for each ``{"messages": [..., assistant]}`` example."""
    if per_example < 1:
        raise InputError("per_example must be at least 1")
    return asyncio.run(
        _vary(provider, examples, per_example, cache, concurrency, max_tokens, progress)
    )


async def _vary(
    provider: Provider,
    examples: Sequence[dict[str, Any]],
    per_example: int,
    cache: AnswerCache | None,
    concurrency: int,
    max_tokens: int | None,
    progress: Callable[[int, int], None] | None,
) -> VariationReport:
    report = VariationReport()
    semaphore = asyncio.Semaphore(concurrency)
    done = 0

    async def one(example: dict[str, Any]) -> list[Variation]:
        nonlocal done
        async with semaphore:
            result = await _vary_one(provider, example, per_example, cache, max_tokens, report)
        done += 1
        if progress is not None:
            progress(done, len(examples))
        return result

    for variations in await asyncio.gather(*(one(example) for example in examples)):
        report.examples.extend(variations)
    return report


async def _vary_one(
    provider: Provider,
    example: dict[str, Any],
    per_example: int,
    cache: AnswerCache | None,
    max_tokens: int | None,
    report: VariationReport,
) -> list[Variation]:
    messages = example.get("messages") or []
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        report.failures["no_answer"] += 1
        return []
    answer = str(messages[-1].get("content") or "")
    original = _user_text(messages[:-1])
    request = [
        {
            "role": "user",
            "content": VARIATION_PROMPT.format(n=per_example, request=original, answer=answer),
        }
    ]
    key = request_key(provider.name, request, {"max_tokens": max_tokens, "vary": per_example}, 0)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        report.cached += 1
        text = cached.text
    else:
        try:
            completion = await provider.acomplete(
                request, options=RequestOptions(max_tokens=max_tokens)
            )
        except ProviderError as exc:
            report.failures[error_kind(exc)] += 1
            return []
        text = completion.text
        report.cost_usd += completion.cost_usd or 0.0
        if cache is not None:
            cache.put(
                key,
                CachedAnswer(
                    text=text,
                    provider=completion.provider,
                    model=completion.model,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    cost_usd=completion.cost_usd,
                    latency_ms=completion.latency_ms,
                ),
            )
    parsed = parse_json(text, lenient=True)
    if not parsed.ok or not isinstance(parsed.value, list):
        report.failures["parse:json"] += 1
        return []
    seen = {" ".join(original.lower().split())}
    system = [m for m in messages[:-1] if m.get("role") == "system"]
    parent = str(example.get("id") or hashlib.sha256(original.encode()).hexdigest()[:16])
    variations = []
    for value in parsed.value:
        if not isinstance(value, str) or not value.strip():
            continue
        normal = " ".join(value.lower().split())
        if normal in seen:
            continue
        seen.add(normal)
        variations.append(
            Variation(
                messages=[
                    *system,
                    {"role": "user", "content": value.strip()},
                    {"role": "assistant", "content": answer},
                ],
                parent=parent,
                metadata={**(example.get("metadata") or {}), "varied_from": parent},
            )
        )
        if len(variations) == per_example:
            break
    if not variations:
        report.failures["no_variation"] += 1
    return variations


def load_examples(source: str, config: Config, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Examples from ``dataset:NAME[@vN]``, ``store:TASK`` or a file/folder in any format."""
    if source.startswith("dataset:"):
        from tuneloop.curate import load_split, resolve_dataset
        from tuneloop.store import Store

        store = Store(config.store_url)
        try:
            dataset = resolve_dataset(store, source.removeprefix("dataset:"))
            rows = load_split(dataset, "train", with_ids=True)
        finally:
            store.close()
        examples = [
            {"id": row.get("interaction_id"), "messages": row["messages"], "metadata": {}}
            for row in rows
        ]
    elif source.startswith("store:"):
        from tuneloop.curate import select_examples
        from tuneloop.store import Store

        store = Store(config.store_url)
        try:
            selection = select_examples(store, config.curate, task=source.removeprefix("store:"))
            examples = [
                {"id": e.interaction_id, "messages": e.messages, "metadata": dict(e.metadata)}
                for e in selection.examples
            ]
        finally:
            store.close()
    else:
        from tuneloop.formats import iter_entries

        examples = []
        for entry in iter_entries(Path(source)):
            if entry.record is None or entry.record.kind != "chat":
                continue
            examples.append(
                {
                    "id": f"{entry.path}:{entry.line}",
                    "messages": entry.record.messages,
                    "metadata": dict(entry.record.metadata),
                }
            )
    return examples[:limit] if limit is not None else examples
