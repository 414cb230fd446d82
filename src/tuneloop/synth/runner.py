"""Run a pipeline: steps in order, calls concurrent under a semaphore, answers cached on arrival.

Each step takes every output of the step before (the first takes the inputs), renders the
prompt, and asks its provider ``fan_out`` times with distinct deterministic seeds. A call whose
exact request is in the cache costs nothing; one whose every provider fails marks that output
failed with the error's kind and the run goes on. Failed calls are not cached, so a re-run
retries exactly those. Each call's cache key is recorded before it is sent and goes along as
its idempotency key (see ``synth.cache``). Retries with backoff and ``Retry-After`` happen
inside the providers.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.errors import InputError
from tuneloop.jsontext import parse_json
from tuneloop.providers import (
    FallbackChain,
    ProviderError,
    RequestOptions,
    build_provider,
    error_kind,
)
from tuneloop.synth.cache import AnswerCache, CachedAnswer, request_key
from tuneloop.synth.limits import Limited, RateLimiter
from tuneloop.synth.pipeline import Pipeline, Step

if TYPE_CHECKING:
    from tuneloop.providers import Provider
    from tuneloop.store import Store

SEEDED_KINDS = ("openai", "together", "openrouter", "openai-compatible")
Progress = Callable[[str, int, int, float], None]  # (step, done, total, spend so far)


@dataclass
class Node:
    """One kept output (or an input, before the first step) with everything it carries."""

    path: str
    variables: dict[str, Any]
    text: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    provider: str = ""
    model: str = ""
    parent: str | None = None
    usage: tuple[int | None, int | None, float | None] = (None, None, None)


@dataclass
class StepStats:
    calls: int = 0
    cached: int = 0
    kept: int = 0
    rejected: int = 0
    failed: int = 0
    resent: int = 0  # in flight when an earlier run died: sent again under the same key


@dataclass
class ProviderSpend:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class RunResult:
    """The answer step's kept outputs (in path order) and what the run did and cost."""

    outputs: list[Node]
    steps: dict[str, StepStats]
    failures: list[dict[str, str]]
    spend: dict[str, ProviderSpend]
    seconds: float

    @property
    def failed(self) -> int:
        """Calls that got no answer (retried by the next run), not outputs a gate turned down."""
        return sum(1 for failure in self.failures if not is_rejection(failure["reason"]))

    @property
    def rejected(self) -> int:
        return len(self.failures) - self.failed

    @property
    def failures_by_reason(self) -> dict[str, int]:
        return dict(Counter(failure["reason"] for failure in self.failures))

    @property
    def cost_usd(self) -> float:
        return round(sum(spend.cost_usd for spend in self.spend.values()), 8)


def is_rejection(reason: str) -> bool:
    """An answer that arrived (and is cached) but did not parse or pass a gate."""
    return reason.startswith(("gate:", "parse:"))


def expand_inputs(pipeline: Pipeline, n: int) -> list[Node]:
    """``n`` inputs: every combination of the variables, shuffled by the seed, cycled."""
    names = sorted(pipeline.vars)
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(pipeline.vars[name] for name in names))
    ] or [{}]
    random.Random(pipeline.seed).shuffle(combos)
    return [
        Node(path=str(index), variables={**combos[index % len(combos)], "index": index})
        for index in range(n)
    ]


def build_step_provider(
    step: Step,
    pipeline: Pipeline,
    limiters: dict[str, RateLimiter],
    *,
    store: Store | None = None,
    providers: Mapping[str, Any] | None = None,
) -> Provider:
    """The step's provider, or a fallback chain of its members, each behind its rate limiter."""
    members: list[Provider] = []
    for spec in step.members:
        provider = build_provider(spec, store=store, providers=providers)
        limit = pipeline.limits.get(spec)
        if limit is not None:
            limiter = limiters.setdefault(spec, RateLimiter(limit.rpm, limit.tpm))
            provider = Limited(provider, limiter)
        members.append(provider)
    if len(members) == 1:
        return members[0]
    return FallbackChain(members, name="chain:" + ",".join(step.members))


def _kind(spec: str, providers: Mapping[str, Any] | None) -> str:
    """The API kind behind a spec (``provider:NAME`` looked up), to know who accepts a seed."""
    kind, _, rest = spec.partition(":")
    if kind == "provider" and providers and rest in providers:
        return str(providers[rest].kind)
    return kind


def call_seed(pipeline: Pipeline, path: str) -> int:
    """A seed per output that stays the same across runs (so the cache and providers agree)."""
    digest = hashlib.sha256(f"{pipeline.seed}:{path}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Runner:
    """Executes one pipeline against a cache; see the module docstring."""

    def __init__(
        self,
        pipeline: Pipeline,
        cache: AnswerCache,
        *,
        store: Store | None = None,
        providers: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> None:
        from jinja2 import Environment, StrictUndefined

        self.pipeline = pipeline
        self.cache = cache
        self.progress = progress
        self.env = Environment(undefined=StrictUndefined, keep_trailing_newline=False)
        self.templates = {
            (step.name, field): self.env.from_string(text)
            for step in pipeline.steps
            for field, text in (("prompt", step.prompt), ("system", step.system))
            if text is not None
        }
        self.limiters: dict[str, RateLimiter] = {}
        self.providers = {
            step.name: build_step_provider(
                step, pipeline, self.limiters, store=store, providers=providers
            )
            for step in pipeline.steps
        }
        self.seeded = {
            step.name: all(_kind(spec, providers) in SEEDED_KINDS for spec in step.members)
            for step in pipeline.steps
        }
        self.stats = {step.name: StepStats() for step in pipeline.steps}
        self.spend: dict[str, ProviderSpend] = {}
        self.failures: list[dict[str, str]] = []

    async def run(self, n: int) -> RunResult:
        started = time.perf_counter()
        semaphore = asyncio.Semaphore(self.pipeline.concurrency)
        nodes = expand_inputs(self.pipeline, n)
        outputs: list[Node] = []
        for step in self.pipeline.steps:
            nodes = await self._run_step(step, nodes, semaphore)
            if step.name == self.pipeline.answer_step.name:
                outputs = nodes
        # HTTP clients live per event loop inside the providers: let them go while this loop
        # still runs, so their connections close here rather than on a closed loop later.
        self.providers.clear()
        gc.collect()  # the clients sit in reference cycles; their finalisers schedule the close
        for _ in range(3):
            await asyncio.sleep(0)
        return RunResult(
            outputs, self.stats, self.failures, self.spend, time.perf_counter() - started
        )

    async def _run_step(
        self, step: Step, nodes: list[Node], semaphore: asyncio.Semaphore
    ) -> list[Node]:
        """Every input × fan-out of one step; the kept outputs, in path order."""
        jobs = [(node, k) for node in nodes for k in range(step.fan_out)]
        done = 0

        async def one(node: Node, k: int) -> Node | None:
            nonlocal done
            async with semaphore:
                result = await self._call(step, node, k)
            done += 1
            if self.progress is not None:
                self.progress(step.name, done, len(jobs), self.total_cost())
            return result

        results = await asyncio.gather(*(one(node, k) for node, k in jobs))
        kept = [node for node in results if node is not None]
        kept.sort(key=lambda node: [int(part) for part in node.path.split(".")])
        return kept

    def total_cost(self) -> float:
        return sum(spend.cost_usd for spend in self.spend.values())

    def _fail(self, step: Step, path: str, reason: str, detail: str) -> None:
        self.failures.append({"step": step.name, "path": path, "reason": reason, "detail": detail})

    def messages_for(self, step: Step, variables: dict[str, Any]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if step.system is not None:
            system = self.templates[step.name, "system"].render(variables)
            messages.append({"role": "system", "content": system})
        user = self.templates[step.name, "prompt"].render(variables)
        messages.append({"role": "user", "content": user})
        return messages

    async def _call(self, step: Step, node: Node, k: int) -> Node | None:
        from jinja2 import TemplateError

        stats = self.stats[step.name]
        path = f"{node.path}.{k}"
        variables = {**node.variables, "item": node.variables, "sample": k}
        try:
            messages = self.messages_for(step, variables)
        except TemplateError as exc:
            stats.failed += 1
            self._fail(step, path, "template", f"{type(exc).__name__}: {exc}")
            return None
        seed = call_seed(self.pipeline, path)
        params = {"max_tokens": step.max_tokens, "temperature": step.temperature}
        key = request_key(",".join(step.members), messages, params, seed)
        stats.calls += 1
        cached = self.cache.get(key)
        if cached is not None:
            stats.cached += 1
            answer = cached
        else:
            if self.cache.mark_sent(key):
                stats.resent += 1
            asked = await self._ask(step, messages, seed, key)
            if isinstance(asked, ProviderError):
                self.cache.settle(key)
                stats.failed += 1
                self._fail(step, path, error_kind(asked), str(asked)[:300])
                return None
            answer = asked
            self.cache.put(key, answer)
            spend = self.spend.setdefault(answer.provider, ProviderSpend())
            spend.calls += 1
            spend.prompt_tokens += answer.prompt_tokens or 0
            spend.completion_tokens += answer.completion_tokens or 0
            spend.cost_usd += answer.cost_usd or 0.0
        value, problem = self._parse_and_gate(step, answer.text, variables)
        if problem is not None:
            stats.rejected += 1
            self._fail(step, path, problem, "the output did not pass")
            return None
        stats.kept += 1
        return Node(
            path=path,
            variables={**node.variables, step.name: value},
            text=answer.text,
            messages=messages,
            provider=answer.provider,
            model=answer.model,
            parent=node.path if "." in node.path else None,
            usage=(answer.prompt_tokens, answer.completion_tokens, answer.cost_usd),
        )

    async def _ask(
        self, step: Step, messages: list[dict[str, Any]], seed: int, key: str
    ) -> CachedAnswer | ProviderError:
        options = RequestOptions(
            max_tokens=step.max_tokens,
            temperature=step.temperature,
            extra_body={"seed": seed} if self.seeded[step.name] else None,
            idempotency_key=key,
        )
        try:
            completion = await self.providers[step.name].acomplete(messages, options=options)
        except ProviderError as exc:
            return exc
        return CachedAnswer(
            text=completion.text,
            provider=completion.provider,
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost_usd=completion.cost_usd,
            latency_ms=completion.latency_ms,
        )

    def _parse_and_gate(
        self, step: Step, text: str, variables: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """(the value later steps see, None) or (None, the reason it was dropped)."""
        value: Any = text.strip()
        gates = step.gates
        schema = step.schema_ if step.parser == "json_schema" else gates.schema_
        if step.parser != "text" or gates.valid_json or schema is not None:
            parsed = parse_json(text, lenient=step.parser != "text")
            if not parsed.ok:
                return None, "parse:json"
            if step.parser != "text":
                value = parsed.value
            if schema is not None:
                import jsonschema

                try:
                    jsonschema.validate(parsed.value, schema)
                except jsonschema.ValidationError:
                    return None, "gate:schema"
        words = len(text.split())
        if gates.min_words is not None and words < gates.min_words:
            return None, "gate:min_words"
        if gates.max_words is not None and words > gates.max_words:
            return None, "gate:max_words"
        for spec in gates.custom:
            from tuneloop.imports import import_object

            check = import_object(spec)
            if not check(text, value, variables):
                return None, f"gate:{spec}"
        return value, None


def run_pipeline(
    pipeline: Pipeline,
    cache_path: Path,
    *,
    n: int | None = None,
    store: Store | None = None,
    providers: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run ``pipeline`` for ``n`` inputs (default: the file's ``n``) with its answer cache."""
    if n is not None and n < 1:
        raise InputError("--n must be at least 1")
    cache = AnswerCache(cache_path)
    try:
        runner = Runner(pipeline, cache, store=store, providers=providers, progress=progress)
        return asyncio.run(runner.run(n or pipeline.n))
    finally:
        cache.close()
