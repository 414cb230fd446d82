"""One deadline per call, and retries with exponential backoff and jitter inside it.

The official clients retry too, but each attempt gets the full timeout again, so three attempts
can take three timeouts. Here the clients run with ``max_retries=0`` and this loop owns the
schedule: every attempt gets only what is left of the call's deadline, a wait that would pass the
deadline is not started (the last error is raised at once, so a chain can move on), and a
server's ``Retry-After`` replaces the computed backoff.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tuneloop.providers.errors import ProviderTimeout, RateLimited, RetryableError

T = TypeVar("T")
Clock = Callable[[], float]


class Deadline:
    """A point in time a call must finish by; ``None`` seconds means no deadline."""

    def __init__(self, seconds: float | None, clock: Clock = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._at = None if seconds is None else clock() + seconds

    def remaining(self) -> float | None:
        return None if self._at is None else self._at - self._clock()

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def cap(self, seconds: float) -> float:
        """``seconds``, shortened to what is left (never below a millisecond)."""
        remaining = self.remaining()
        return seconds if remaining is None else max(0.001, min(seconds, remaining))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``base_delay_s × 2^attempt`` capped at ``max_delay_s``, of which a
    random share up to ``jitter`` is taken off so many clients do not retry in step."""

    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.5

    def delay(self, attempt: int, error: RetryableError, rng: random.Random) -> float:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return max(0.0, error.retry_after)
        backoff = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return backoff * (1 - self.jitter * rng.random())


def timed_out(name: str, deadline: Deadline) -> ProviderTimeout:
    return ProviderTimeout(f"{name}: no answer within the {deadline.seconds:g} s deadline")


def next_delay(
    policy: RetryPolicy,
    attempt: int,
    error: RetryableError,
    deadline: Deadline,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the error should be raised: out
    of retries, or the wait would end past the deadline."""
    if attempt >= policy.max_retries:
        return None
    delay = policy.delay(attempt, error, rng)
    remaining = deadline.remaining()
    if remaining is not None and delay >= remaining:
        return None
    return delay


def retry_call(
    call: Callable[[], T],
    *,
    name: str,
    policy: RetryPolicy,
    deadline: Deadline,
    rng: random.Random,
    on_retry: Callable[[RetryableError], None],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()`` until it succeeds, fails finally, runs out of retries or of time."""
    attempt = 0
    while True:
        if deadline.expired():
            raise timed_out(name, deadline)
        try:
            return call()
        except RetryableError as error:
            delay = next_delay(policy, attempt, error, deadline, rng)
            if delay is None:
                raise
            on_retry(error)
            sleep(delay)
            attempt += 1


async def aretry_call(
    call: Callable[[], Awaitable[T]],
    *,
    name: str,
    policy: RetryPolicy,
    deadline: Deadline,
    rng: random.Random,
    on_retry: Callable[[RetryableError], None],
) -> T:
    """The async twin of ``retry_call``; also cancels an attempt that outlives the deadline."""
    attempt = 0
    while True:
        remaining = deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise timed_out(name, deadline)
        try:
            async with asyncio.timeout(remaining):
                return await call()
        except TimeoutError:
            raise timed_out(name, deadline) from None
        except RetryableError as error:
            delay = next_delay(policy, attempt, error, deadline, rng)
            if delay is None:
                raise
            on_retry(error)
            await asyncio.sleep(delay)
            attempt += 1
