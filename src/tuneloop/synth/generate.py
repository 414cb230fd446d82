"""Template prompts → teacher answers → a validation gate → ``source="synthetic"`` interactions.

This is the first stage of what later becomes a multi-stage pipeline (provider fallback chains,
concurrency, cache and resume); its contract stays: synthetic rows in the store, nothing else.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuneloop.errors import InputError, ProviderError
from tuneloop.providers.base import Provider

if TYPE_CHECKING:
    from tuneloop.capture.client import Tuneloop

Validator = Callable[[dict[str, str], str], float]  # (item, answer) -> score in [0, 1]


@dataclass
class SynthReport:
    requested: int = 0
    stored: int = 0
    rejected: int = 0
    failed: int = 0
    interaction_ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def expand_templates(
    templates: Sequence[str], variables: dict[str, Sequence[str]], *, limit: int, seed: int = 0
) -> list[dict[str, str]]:
    """Fill templates with every combination of variables, shuffled, and keep ``limit``.

    Each item carries the prompt and the variable values, which become the example's metadata
    (so coverage by category can be checked later).
    """
    names = sorted(variables)
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(variables[name] for name in names))
    ]
    if not templates or not combos:
        raise InputError("synthesis needs at least one template and one value per variable")
    rng = random.Random(seed)
    items = []
    for index, template in enumerate(templates):
        for combo in combos:
            try:
                items.append({**combo, "prompt": template.format(**combo), "template": str(index)})
            except KeyError as exc:
                raise InputError(f"template {template!r} uses unknown variable {exc}") from None
    rng.shuffle(items)
    return items[:limit]


def generate_examples(
    client: Tuneloop,
    provider: Provider,
    items: Sequence[dict[str, str]],
    *,
    task: str,
    system_prompt: str | None = None,
    validator: Validator | None = None,
    min_score: float = 1.0,
    max_tokens: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SynthReport:
    """Ask ``provider`` for each prompt; store answers whose validator score ≥ ``min_score``."""
    report = SynthReport(requested=len(items))
    for done, item in enumerate(items, start=1):
        messages: list[dict[str, Any]] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        messages.append({"role": "user", "content": item["prompt"]})
        try:
            completion = provider.complete(messages, max_tokens=max_tokens)
        except ProviderError as exc:
            report.failed += 1
            report.errors[str(exc)[:200]] += 1
            continue
        if validator is not None and validator(item, completion.text) < min_score:
            report.rejected += 1
        else:
            interaction_id = client.log(
                messages,
                completion.text,
                model=completion.model,
                provider=provider.name,
                task=task,
                source="synthetic",
                metadata={k: v for k, v in item.items() if k != "prompt"},
                latency_ms=completion.latency_ms,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                cost_usd=completion.cost_usd,
            )
            if interaction_id:
                report.stored += 1
                report.interaction_ids.append(interaction_id)
        if progress is not None:
            progress(done, len(items))
    return report
