"""The one place the gateway calls providers.

A route is a fallback chain of the providers package (``FallbackChain``: members in order, a
circuit breaker per member, the trail of what was tried). Each member is a :class:`Checked`
provider: the real provider with the gateway's per-call deadline and the task's answer checks,
so a late answer, prose where JSON was due, a schema failure or a validator's veto make the
chain move on exactly like a 5xx does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from tuneloop.config import ProviderSettings
from tuneloop.gateway.routing import Target
from tuneloop.providers import (
    BaseProvider,
    BreakerSettings,
    Completion,
    FallbackChain,
    LocalModels,
    Message,
    OutputCheck,
    Provider,
    ProviderTimeout,
    RequestOptions,
    SharedLocalProvider,
    StreamChunk,
    build_provider,
)
from tuneloop.store import Store

RulesFor = Callable[[str, RequestOptions], OutputCheck]  # (task, options) → the check


class Checked(BaseProvider):
    """A chain member: builds its provider on first use (a build failure is a failed call, so
    the chain falls back), bounds each call by ``timeout_s``, and checks the answer."""

    def __init__(
        self,
        target: Target,
        task: str,
        rules: RulesFor,
        timeout_s: float,
        build: Callable[[str], Provider],
    ) -> None:
        self.name = target.name
        self.target = target
        self.task = task
        self.rules = rules
        self.timeout_s = timeout_s
        self._build = build

    def _provider(self) -> Provider:
        return self._build(self.target.spec)

    def _checked(self, completion: Completion, options: RequestOptions) -> Completion:
        """The answer normalised, or ``InvalidOutput`` (named after this member) so the chain
        moves on."""
        named = completion.replace(provider=self.name)
        return self.rules(self.task, options).apply(named).replace(provider=completion.provider)

    def _deadline(self, options: RequestOptions) -> float:
        return min(self.timeout_s, options.timeout_s or self.timeout_s)

    async def _acomplete(self, messages: list[Message], options: RequestOptions) -> Completion:
        seconds = self._deadline(options)
        provider = self._provider()
        try:
            completion = await asyncio.wait_for(
                provider.acomplete(messages, options=options.with_overrides(timeout_s=seconds)),
                seconds,
            )
        except TimeoutError:
            raise ProviderTimeout(f"{self.name}: no answer within {seconds:g} s") from None
        return self._checked(completion, options)

    async def _astream(
        self, messages: list[Message], options: RequestOptions
    ) -> AsyncIterator[StreamChunk]:
        """The provider's own stream, passed on delta by delta within the deadline. The answer
        is not checked here: its text is already out, so the gateway checks it at the end and
        records the verdict instead of falling back."""
        seconds = self._deadline(options)
        ends = time.monotonic() + seconds
        chunks = self._provider().astream(
            messages, options=options.with_overrides(timeout_s=seconds)
        )
        try:
            while True:
                try:
                    async with asyncio.timeout(max(0.0, ends - time.monotonic())):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise ProviderTimeout(
                        f"{self.name}: the stream did not end within {seconds:g} s"
                    ) from None
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        seconds = self._deadline(options)
        completion = self._provider().complete(
            messages, options=options.with_overrides(timeout_s=seconds)
        )
        return self._checked(completion, options)


class Upstream:
    """Providers by spec and chains by route, built once and shared by every request."""

    def __init__(
        self,
        store: Store | None,
        *,
        timeout_s: float,
        breaker: BreakerSettings,
        providers: Mapping[str, ProviderSettings] | None = None,
        device: str = "auto",
        local: LocalModels | None = None,
    ) -> None:
        self.store = store
        self.local = local
        self.named = dict(providers or {})
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.device = device
        self._providers: dict[str, Provider] = {}
        self._chains: dict[tuple[str, tuple[str, ...]], FallbackChain] = {}
        self._lock = threading.Lock()

    def provider(self, spec: str) -> Provider:
        """The provider of a spec, built once (a ``ProviderError`` naming it when it cannot)."""
        found = self._providers.get(spec)
        if found is not None:
            return found
        with self._lock:
            if spec not in self._providers:
                self._providers[spec] = build_provider(
                    spec,
                    store=self.store,
                    device=self.device,
                    providers=self.named,
                    local=self.local,
                )
            return self._providers[spec]

    def chain(self, task: str, targets: Sequence[Target], rules: RulesFor) -> FallbackChain:
        """The chain of a route: its breakers persist across calls, so a failing member is
        skipped for a while (the chain's cooldown) instead of being waited for on every call."""
        key = (task, tuple(target.spec for target in targets))
        found = self._chains.get(key)
        if found is not None:
            return found
        with self._lock:
            if key not in self._chains:
                members = [
                    Checked(target, task, rules, self.timeout_s, self.provider)
                    for target in targets
                ]
                self._chains[key] = FallbackChain(
                    members, name=f"route:{task}", breaker=self.breaker
                )
            return self._chains[key]

    def forget(self, keep: set[str]) -> None:
        """Drop providers and chains of versions no longer routed (a replaced version)."""
        with self._lock:
            for spec in [
                spec
                for spec in self._providers
                if spec.startswith("registry:") and spec not in keep
            ]:
                dropped = self._providers.pop(spec)
                if isinstance(dropped, SharedLocalProvider):
                    dropped.release()  # its adapter leaves the shared base
            for key in [key for key in self._chains if not set(key[1]) <= keep]:
                del self._chains[key]

    def close(self) -> None:
        """Stop the local models' batching workers."""
        if self.local is not None:
            self.local.close()
