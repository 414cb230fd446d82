"""What a 3-provider fallback chain adds when its first two providers fail fast.

Peer: calling the third provider directly. Ours: ``chain:first,second,third`` where the first two
fail at once (HTTP 503 and 429 from a loopback server speaking OpenAI's wire format, through the
official ``openai`` client) and the third answers. The chain's own overhead is its time per call
minus the providers' own latency: each round times the third provider alone, each failing
provider alone and the chain, one after another, and the overhead is the median over rounds of
chain − (third + first + second). The circuit breaker
is off so every call really falls through two failures; a second figure shows the breaker's
skip path, and an in-process variant (Python callables) isolates the chain's bookkeeping.

    python bench/chain_overhead.py [--calls 300]

Last line: {"bench": "chain_overhead", "unit": "calls/s", "ours": …, "peer": …, "ratio": …, …}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes import FakeLLMServer, Reply

from tuneloop.config import ProviderSettings
from tuneloop.providers import (
    BreakerSettings,
    CallableProvider,
    FallbackChain,
    ProviderError,
    ProviderUnavailable,
    build_from_settings,
)

MESSAGES = [{"role": "user", "content": "Design a mobile settings screen."}]
GOAL_MS = 5.0


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def failing_call(provider: object) -> Callable[[], None]:
    def call() -> None:
        try:
            provider.complete(MESSAGES)  # type: ignore[attr-defined]
        except ProviderError:
            return
        raise AssertionError("expected a failure")

    return call


def paired(calls: int, cases: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Each case once per round, in turn, so all see the same machine load; ms per call."""
    for _ in range(min(20, calls)):
        for call in cases.values():
            call()  # warm connections and caches
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(calls):
        for name, call in cases.items():
            times[name].append(timed(call))
    return times


def overhead(times: dict[str, list[float]], whole: str, parts: list[str]) -> float:
    """Median over rounds of (whole − sum of its parts), in ms: a paired difference."""
    rounds = len(times[whole])
    return statistics.median(
        times[whole][i] - sum(times[part][i] for part in parts) for i in range(rounds)
    )


def http_case(server: FakeLLMServer, calls: int) -> dict[str, float]:
    def fake(api_base: str, name: str) -> object:
        settings = ProviderSettings(
            kind="openai-compatible", model="bench-model", base_url=api_base, max_retries=0
        )
        return build_from_settings(name, settings)

    # The first two fail at once (HTTP 503 from the OpenAI-format fake); the third answers.
    server.openai.default = Reply.error(503, "overloaded")
    server.together.default = Reply(text='{"type": "FRAME"}', usage=(20, 8))
    first = fake(server.openai.base_url, "first")
    second = fake(server.openai.base_url, "second")
    third = fake(server.together.base_url, "third")
    chain = FallbackChain([first, second, third], breaker=None)
    skipping = FallbackChain(
        [first, second, third], breaker=BreakerSettings(failures=3, window_s=60, cooldown_s=3600)
    )
    for _ in range(3):
        skipping.complete(MESSAGES)  # opens the first two circuits for the whole run
    assert chain.complete(MESSAGES).provider == "third"
    times = paired(
        calls,
        {
            "third": lambda: third.complete(MESSAGES),
            "first": failing_call(first),
            "second": failing_call(second),
            "chain": lambda: chain.complete(MESSAGES),
            "skipping": lambda: skipping.complete(MESSAGES),
        },
    )
    return {
        "chain_ms": statistics.median(times["chain"]),
        "third_alone_ms": statistics.median(times["third"]),
        "failures_alone_ms": statistics.median(times["first"]) + statistics.median(times["second"]),
        "overhead_ms": overhead(times, "chain", ["third", "first", "second"]),
        "breaker_open_chain_ms": statistics.median(times["skipping"]),
        "breaker_open_overhead_ms": overhead(times, "skipping", ["third"]),
    }


def in_process_case(calls: int) -> dict[str, float]:
    def fail(_messages: object) -> str:
        raise ProviderUnavailable("down", status=503)

    first = CallableProvider(fail, name="first")
    second = CallableProvider(fail, name="second")
    third = CallableProvider(lambda _m: '{"type": "FRAME"}', name="third")
    chain = FallbackChain([first, second, third], breaker=None)
    times = paired(
        calls * 20,
        {
            "third": lambda: third.complete(MESSAGES),
            "first": failing_call(first),
            "second": failing_call(second),
            "chain": lambda: chain.complete(MESSAGES),
        },
    )
    return {
        "in_process_chain_ms": statistics.median(times["chain"]),
        "in_process_overhead_ms": overhead(times, "chain", ["third", "first", "second"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per timed run")
    args = parser.parse_args()
    server = FakeLLMServer().start()
    try:
        http = http_case(server, args.calls)
    finally:
        server.stop()
    local = in_process_case(args.calls)
    for key, value in {**http, **local}.items():
        print(f"{key:28s} {value:9.3f}")
    ours_rate = 1000 / http["chain_ms"]
    peer_rate = 1000 / http["third_alone_ms"]
    print(
        json.dumps(
            {
                "bench": "chain_overhead",
                "unit": "calls/s",
                "ours": round(ours_rate, 1),
                "peer": round(peer_rate, 1),
                "ratio": round(ours_rate / peer_rate, 3),
                "overhead_ms": round(http["overhead_ms"], 3),
                "breaker_open_overhead_ms": round(http["breaker_open_overhead_ms"], 3),
                "in_process_overhead_ms": round(local["in_process_overhead_ms"], 4),
                "goal_ms": GOAL_MS,
                "calls": args.calls,
            }
        )
    )


if __name__ == "__main__":
    main()
