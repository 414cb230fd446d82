"""Requests- and tokens-per-minute limits for one provider, enforced before each call.

A sliding one-minute window of (time, tokens) entries: a call waits until both the number of
calls and the tokens in the last minute leave room for it. Retries and ``Retry-After`` stay in
the providers' own retry loop; this only keeps a run from provoking rate limits at all.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from tuneloop.providers import BaseProvider, Completion, Message, Provider, RequestOptions

WINDOW_S = 60.0


class RateLimiter:
    """At most ``rpm`` calls and ``tpm`` tokens in any minute (either may be None: no limit)."""

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._sleep = sleep
        self._window: deque[list[float]] = deque()  # [when, tokens]
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> list[float]:
        """Wait for room, take it; the returned entry can be corrected with :meth:`settle`."""
        if self.tpm is not None:
            tokens = min(tokens, self.tpm)  # a call larger than the budget waits for a clear minute
        async with self._lock:
            while True:
                now = self._clock()
                while self._window and self._window[0][0] <= now - WINDOW_S:
                    self._window.popleft()
                used = sum(spent for _, spent in self._window)
                calls_ok = self.rpm is None or len(self._window) < self.rpm
                tokens_ok = self.tpm is None or used + tokens <= self.tpm
                if calls_ok and tokens_ok:
                    entry = [now, float(tokens)]
                    self._window.append(entry)
                    return entry
                await self._sleep(max(0.001, self._window[0][0] + WINDOW_S - now))

    def settle(self, entry: list[float], tokens: int) -> None:
        """Replace a call's estimate by the tokens it really used, once the answer is in."""
        entry[1] = float(tokens)


class Limited(BaseProvider):
    """A provider whose async calls first pass its rate limiter."""

    def __init__(self, inner: Provider, limiter: RateLimiter) -> None:
        self.inner = inner
        self.limiter = limiter
        self.name = inner.name

    async def _acomplete(self, messages: list[Message], options: RequestOptions) -> Completion:
        entry = await self.limiter.acquire(estimate_request_tokens(messages, options))
        completion = await self.inner.acomplete(messages, options=options)
        if completion.prompt_tokens is not None and completion.completion_tokens is not None:
            self.limiter.settle(entry, completion.prompt_tokens + completion.completion_tokens)
        return completion


def estimate_request_tokens(messages: Sequence[Message], options: RequestOptions) -> int:
    """Prompt tokens (4 characters a token) plus the answer budget (256 when unset)."""
    chars = sum(len(str(message.get("content") or "")) for message in messages)
    return chars // 4 + 1 + (options.max_tokens or 256)
