"""Rate limits: no minute ever holds more calls or tokens than allowed (on a fake clock)."""

from __future__ import annotations

import asyncio

from tuneloop.synth.limits import WINDOW_S, RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def admitted(limiter: RateLimiter, time: FakeTime, tokens: list[int]) -> list[float]:
    async def main() -> list[float]:
        moments = []
        for count in tokens:
            await limiter.acquire(count)
            moments.append(time.now)
        return moments

    return asyncio.run(main())


def busiest_minute(moments: list[float], weights: list[int]) -> tuple[int, int]:
    calls = tokens = 0
    for start in moments:
        inside = [i for i, t in enumerate(moments) if start <= t < start + WINDOW_S]
        calls = max(calls, len(inside))
        tokens = max(tokens, sum(weights[i] for i in inside))
    return calls, tokens


def test_requests_per_minute() -> None:
    time = FakeTime()
    limiter = RateLimiter(3, None, clock=time.clock, sleep=time.sleep)
    moments = admitted(limiter, time, [1] * 7)
    assert busiest_minute(moments, [1] * 7)[0] == 3
    assert moments[:3] == [0.0, 0.0, 0.0] and moments[3] >= WINDOW_S


def test_tokens_per_minute() -> None:
    time = FakeTime()
    limiter = RateLimiter(None, 1000, clock=time.clock, sleep=time.sleep)
    weights = [400, 400, 400, 300, 900, 100]
    moments = admitted(limiter, time, weights)
    assert busiest_minute(moments, weights)[1] <= 1000
    assert moments[2] >= WINDOW_S  # the third 400 would have made 1200


def test_settled_usage_replaces_the_estimate() -> None:
    time = FakeTime()
    limiter = RateLimiter(None, 1000, clock=time.clock, sleep=time.sleep)

    async def main() -> list[float]:
        entry = await limiter.acquire(900)  # estimated with the whole answer budget
        limiter.settle(entry, 100)  # the answer was short
        await limiter.acquire(800)  # fits in the same minute now
        return [time.now]

    assert asyncio.run(main()) == [0.0]
