"""A fallback chain: providers tried in order, itself a provider.

A member is skipped while its circuit is open: ``failures`` errors within ``window_s`` open it for
``cooldown_s``, after which one call probes it (success closes the circuit, failure opens it
again). Which errors move on to the next member is configurable by kind (``fallback_on``); any
other error is raised at once. Every completion carries the trail of what was tried and why it
was passed over. A stream may fall back only until its first text reaches the caller; a failure
after that ends the stream with ``StreamInterrupted``.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneloop.providers.base import (
    Attempt,
    BaseProvider,
    Completion,
    Message,
    Provider,
    RequestOptions,
    StreamChunk,
)
from tuneloop.providers.errors import (
    ERROR_KINDS,
    AllProvidersFailed,
    FinalError,
    ProviderError,
    ProviderUnavailable,
    RetryableError,
    StreamInterrupted,
    error_kind,
)
from tuneloop.providers.retry import Clock, Deadline

if TYPE_CHECKING:
    from tuneloop.providers.output import OutputCheck

FALLBACK_GROUPS = ("any", "retryable", "final")


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 3
    window_s: float = 60.0
    cooldown_s: float = 30.0


class CircuitBreaker:
    """closed → (``failures`` within ``window_s``) → open → (``cooldown_s``) → one probe →
    closed on success, open again on failure. Thread-safe; ``clock`` is injectable for tests."""

    def __init__(self, settings: BreakerSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._probing:
                return "probing"
            cooling = self._clock() - self._opened_at < self.settings.cooldown_s
            return "open" if cooling else "half-open"

    def allow(self) -> bool:
        """May the member be called now? In half-open state only one caller gets to probe."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.settings.cooldown_s:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures.clear()
            self._opened_at = None
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            if self._opened_at is not None:  # the probe failed: cool down again
                self._opened_at, self._probing = now, False
                return
            self._failures.append(now)
            while self._failures and now - self._failures[0] > self.settings.window_s:
                self._failures.popleft()
            if len(self._failures) >= self.settings.failures:
                self._opened_at = now
                self._failures.clear()

    def release(self) -> None:
        """A call ended without a verdict (the caller stopped reading): free the probe slot."""
        with self._lock:
            self._probing = False

    def describe(self) -> str:
        return (
            f"circuit open after {self.settings.failures} failures within "
            f"{self.settings.window_s:g} s; skipped for {self.settings.cooldown_s:g} s"
        )


def check_fallback_on(kinds: Collection[str]) -> tuple[str, ...]:
    known = set(FALLBACK_GROUPS) | set(ERROR_KINDS.values())
    unknown = sorted(set(kinds) - known)
    if unknown:
        raise ProviderError(
            f"unknown error kind(s) in fallback_on: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return tuple(kinds)


class FallbackChain(BaseProvider):
    """Members in order; the first answer wins. ``timeout_s`` bounds the whole call."""

    def __init__(
        self,
        members: Sequence[Provider],
        *,
        name: str | None = None,
        fallback_on: Collection[str] = ("any",),
        breaker: BreakerSettings | None = BreakerSettings(),
        timeout_s: float | None = None,
        clock: Clock = time.monotonic,
        output: OutputCheck | None = None,
    ) -> None:
        if not members:
            raise ProviderError("a chain needs at least one provider")
        self.members = tuple(members)
        self.name = name or "chain:" + ",".join(member.name for member in self.members)
        self.fallback_on = check_fallback_on(fallback_on)
        self.timeout_s = timeout_s
        self.output = output
        self._clock = clock
        self.breakers = tuple(
            CircuitBreaker(breaker, clock) if breaker is not None else None for _ in self.members
        )

    def with_output(self, check: OutputCheck) -> FallbackChain:
        """The same chain (same members and circuit breakers) checking each member's answer."""
        chain = copy.copy(self)
        chain.output = check
        return chain

    def _accept(self, completion: Completion) -> Completion:
        """A member's answer after the chain's output check (``InvalidOutput`` falls through)."""
        return completion if self.output is None else self.output.apply(completion)

    # -- decisions shared by the four ways of calling -------------------------------------

    def falls_back_on(self, error: ProviderError) -> bool:
        kinds = self.fallback_on
        return (
            "any" in kinds
            or ("retryable" in kinds and isinstance(error, RetryableError))
            or ("final" in kinds and isinstance(error, FinalError))
            or error_kind(error) in kinds
        )

    def _plan(self, options: RequestOptions) -> tuple[Deadline, list[Attempt], float]:
        seconds = [s for s in (self.timeout_s, options.timeout_s) if s is not None]
        return Deadline(min(seconds) if seconds else None, self._clock), [], time.perf_counter()

    def _admit(self, index: int, deadline: Deadline, trail: list[Attempt]) -> bool:
        member, breaker = self.members[index], self.breakers[index]
        if deadline.expired():
            trail.append(
                Attempt(
                    member.name,
                    "skipped",
                    "timeout",
                    f"the chain's {deadline.seconds:g} s deadline had passed",
                )
            )
            return False
        if breaker is not None and not breaker.allow():
            trail.append(Attempt(member.name, "skipped", "circuit_open", breaker.describe()))
            return False
        return True

    def _member_options(self, options: RequestOptions, deadline: Deadline) -> RequestOptions:
        remaining = deadline.remaining()
        if remaining is None:
            return options
        return options.with_overrides(timeout_s=min(remaining, options.timeout_s or remaining))

    def _failed(
        self, index: int, error: ProviderError, started: float, trail: list[Attempt]
    ) -> None:
        """Record a member's failure; raise it unless the chain falls through on its kind."""
        breaker = self.breakers[index]
        if breaker is not None:
            breaker.record_failure()
        trail.append(
            Attempt(
                self.members[index].name,
                "failed",
                error_kind(error),
                str(error),
                (time.perf_counter() - started) * 1000,
            )
        )
        if not self.falls_back_on(error):
            raise error

    def _succeeded(
        self,
        index: int,
        completion: Completion,
        started: float,
        begun: float,
        trail: list[Attempt],
    ) -> Completion:
        """The answer, with the trail so far and the chain's whole latency (failed tries too)."""
        breaker = self.breakers[index]
        if breaker is not None:
            breaker.record_success()
        own = completion.trail or (
            Attempt(
                self.members[index].name, "ok", latency_ms=(time.perf_counter() - started) * 1000
            ),
        )
        return completion.replace(
            trail=(*trail, *own), latency_ms=(time.perf_counter() - begun) * 1000
        )

    def _exhausted(self, trail: list[Attempt]) -> AllProvidersFailed:
        summary = "; ".join(attempt.describe() for attempt in trail)
        return AllProvidersFailed(
            f"every provider of {self.name} failed: {summary}", trail=tuple(trail)
        )

    def _interrupted(self, index: int, error: ProviderError) -> StreamInterrupted:
        return StreamInterrupted(
            f"{self.members[index].name} failed after its answer began streaming "
            f"({error_kind(error)}: {error}); a stream cannot fall back once text is out"
        )

    def _abandon(self, index: int) -> None:
        breaker = self.breakers[index]
        if breaker is not None:
            breaker.release()

    # -- the four ways of calling ----------------------------------------------------------

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        deadline, trail, begun = self._plan(options)
        for index, member in enumerate(self.members):
            if not self._admit(index, deadline, trail):
                continue
            started = time.perf_counter()
            try:
                completion = self._accept(
                    member.complete(messages, options=self._member_options(options, deadline))
                )
            except ProviderError as error:
                self._failed(index, error, started, trail)
                continue
            except BaseException:
                self._abandon(index)
                raise
            return self._succeeded(index, completion, started, begun, trail)
        raise self._exhausted(trail)

    async def _acomplete(self, messages: list[Message], options: RequestOptions) -> Completion:
        deadline, trail, begun = self._plan(options)
        for index, member in enumerate(self.members):
            if not self._admit(index, deadline, trail):
                continue
            started = time.perf_counter()
            try:
                completion = self._accept(
                    await member.acomplete(
                        messages, options=self._member_options(options, deadline)
                    )
                )
            except ProviderError as error:
                self._failed(index, error, started, trail)
                continue
            except BaseException:
                self._abandon(index)
                raise
            return self._succeeded(index, completion, started, begun, trail)
        raise self._exhausted(trail)

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        deadline, trail, begun = self._plan(options)
        for index, member in enumerate(self.members):
            if not self._admit(index, deadline, trail):
                continue
            started, delivered, settled = time.perf_counter(), False, False
            try:
                for chunk in member.stream(
                    messages, options=self._member_options(options, deadline)
                ):
                    if chunk.completion is not None:
                        final = self._accept(chunk.completion)
                        settled = True
                        yield StreamChunk(
                            completion=self._succeeded(index, final, started, begun, trail)
                        )
                        return
                    if chunk.text:
                        yield self._named(chunk, index, trail, first=not delivered)
                        delivered = True
                raise ProviderUnavailable(f"{member.name}: the stream ended without a result")
            except ProviderError as error:
                settled = True
                if delivered:
                    self._failed_quietly(index)
                    raise self._interrupted(index, error) from error
                self._failed(index, error, started, trail)
            finally:
                if not settled:
                    self._abandon(index)
        raise self._exhausted(trail)

    async def _astream(
        self, messages: list[Message], options: RequestOptions
    ) -> AsyncIterator[StreamChunk]:
        deadline, trail, begun = self._plan(options)
        for index, member in enumerate(self.members):
            if not self._admit(index, deadline, trail):
                continue
            started, delivered, settled = time.perf_counter(), False, False
            try:
                async for chunk in member.astream(
                    messages, options=self._member_options(options, deadline)
                ):
                    if chunk.completion is not None:
                        final = self._accept(chunk.completion)
                        settled = True
                        yield StreamChunk(
                            completion=self._succeeded(index, final, started, begun, trail)
                        )
                        return
                    if chunk.text:
                        yield self._named(chunk, index, trail, first=not delivered)
                        delivered = True
                raise ProviderUnavailable(f"{member.name}: the stream ended without a result")
            except ProviderError as error:
                settled = True
                if delivered:
                    self._failed_quietly(index)
                    raise self._interrupted(index, error) from error
                self._failed(index, error, started, trail)
            finally:
                if not settled:
                    self._abandon(index)
        raise self._exhausted(trail)

    def _named(
        self, chunk: StreamChunk, index: int, trail: list[Attempt], *, first: bool
    ) -> StreamChunk:
        """A member's text delta, named after the member (and, first, with the trail so far)."""
        return dataclasses.replace(
            chunk, provider=self.members[index].name, trail=tuple(trail) if first else ()
        )

    def _failed_quietly(self, index: int) -> None:
        breaker = self.breakers[index]
        if breaker is not None:
            breaker.record_failure()
