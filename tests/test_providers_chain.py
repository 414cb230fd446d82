"""The provider interface, the error tree and the fallback chain, with in-process providers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tuneloop.errors import TuneloopError
from tuneloop.providers import (
    AllProvidersFailed,
    AuthenticationError,
    BadRequest,
    BreakerSettings,
    CallableProvider,
    CircuitBreaker,
    FallbackChain,
    FinalError,
    InvalidOutput,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestOptions,
    RetryableError,
    StreamInterrupted,
    build_provider,
    error_kind,
)
from tuneloop.providers.base import BaseProvider, Completion, Message, StreamChunk

HELLO = [{"role": "user", "content": "hello"}]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing(error: ProviderError) -> Callable[[list[Message]], str]:
    def respond(_messages: list[Message]) -> str:
        raise error

    return respond


def answering(text: str, calls: list[str] | None = None) -> Callable[[list[Message]], str]:
    def respond(_messages: list[Message]) -> str:
        if calls is not None:
            calls.append(text)
        return text

    return respond


def test_the_error_tree_separates_retryable_from_final() -> None:
    retryable = [
        ProviderConnectionError("x"),
        ProviderTimeout("x"),
        RateLimited("x", retry_after=2.0),
        ProviderUnavailable("x", status=503),
    ]
    final = [
        AuthenticationError("x", env_var="OPENAI_API_KEY"),
        BadRequest("x", status=400),
        InvalidOutput("x", reason="not_json"),
    ]
    assert all(isinstance(e, RetryableError) and not isinstance(e, FinalError) for e in retryable)
    assert all(isinstance(e, FinalError) and not isinstance(e, RetryableError) for e in final)
    assert all(isinstance(e, TuneloopError) for e in retryable + final)
    assert [error_kind(e) for e in retryable + final] == [
        "connection",
        "timeout",
        "rate_limited",
        "unavailable",
        "authentication",
        "bad_request",
        "invalid_output",
    ]
    assert error_kind(ValueError()) == "error"


def test_request_options_merge_the_keyword_shortcuts() -> None:
    seen: list[RequestOptions] = []

    class Recorder(BaseProvider):
        name = "recorder"

        def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
            seen.append(options)
            return Completion(text="ok", model="m", provider=self.name, latency_ms=1.0)

    base = RequestOptions(max_tokens=10, temperature=0.5, response_format={"type": "json_object"})
    Recorder().complete(HELLO, max_tokens=20, options=base)
    Recorder().complete(HELLO)
    assert seen[0] == RequestOptions(
        max_tokens=20, temperature=0.5, response_format={"type": "json_object"}
    )
    assert seen[1] == RequestOptions()


def test_a_one_piece_provider_also_answers_async_and_as_a_stream() -> None:
    provider = CallableProvider(answering("the answer"), name="fn")
    assert asyncio.run(provider.acomplete(HELLO)).text == "the answer"
    chunks = list(provider.stream(HELLO))
    assert [c.text for c in chunks if c.text] == ["the answer"]
    assert chunks[-1].completion is not None and chunks[-1].completion.text == "the answer"

    async def collect() -> list[StreamChunk]:
        return [chunk async for chunk in provider.astream(HELLO)]

    async_chunks = asyncio.run(collect())
    assert async_chunks[-1].completion is not None
    assert "".join(c.text for c in async_chunks) == "the answer"


def test_a_callable_passes_provider_errors_through_and_wraps_others() -> None:
    with pytest.raises(RateLimited):
        CallableProvider(failing(RateLimited("slow down", retry_after=1)), name="f").complete(HELLO)

    def broken(_messages: list[Message]) -> str:
        raise KeyError("boom")

    with pytest.raises(ProviderError, match="raised KeyError") as caught:
        CallableProvider(broken, name="broken").complete(HELLO)
    assert not isinstance(caught.value, RetryableError | FinalError)


def test_the_chain_falls_through_in_order_and_records_why() -> None:
    calls: list[str] = []
    chain = FallbackChain(
        [
            CallableProvider(
                failing(ProviderUnavailable("503 from upstream", status=503)), name="a"
            ),
            CallableProvider(failing(InvalidOutput("not JSON", reason="not_json")), name="b"),
            CallableProvider(answering("from c", calls), name="c"),
        ],
        name="crafter",
    )
    completion = chain.complete(HELLO)
    assert completion.text == "from c" and completion.provider == "c"
    assert [(a.provider, a.outcome, a.error) for a in completion.trail] == [
        ("a", "failed", "unavailable"),
        ("b", "failed", "invalid_output"),
        ("c", "ok", None),
    ]
    assert "503 from upstream" in (completion.trail[0].detail or "")
    assert calls == ["from c"]


def test_the_chain_raises_errors_it_is_not_configured_to_fall_back_on() -> None:
    later: list[str] = []
    chain = FallbackChain(
        [
            CallableProvider(failing(BadRequest("unknown model", status=404)), name="a"),
            CallableProvider(answering("b", later), name="b"),
        ],
        fallback_on=("retryable", "invalid_output"),
    )
    with pytest.raises(BadRequest):
        chain.complete(HELLO)
    assert later == []
    with pytest.raises(ProviderError, match="unknown error kind"):
        FallbackChain([CallableProvider(answering("x"))], fallback_on=("typo",))


def test_when_every_member_fails_the_error_lists_each() -> None:
    chain = FallbackChain(
        [
            CallableProvider(failing(ProviderTimeout("no answer within 1 s")), name="a"),
            CallableProvider(failing(AuthenticationError("key refused", env_var="K")), name="b"),
        ]
    )
    with pytest.raises(AllProvidersFailed) as caught:
        chain.complete(HELLO)
    assert [a.error for a in caught.value.trail] == ["timeout", "authentication"]
    assert "a: failed (timeout" in str(caught.value) and "b: failed (authentication" in str(
        caught.value
    )


def test_the_breaker_skips_a_failing_member_then_probes_it_again() -> None:
    clock = FakeClock()
    healthy = {"a": False}

    def flaky(_messages: list[Message]) -> str:
        if not healthy["a"]:
            raise ProviderUnavailable("down", status=500)
        return "from a"

    a_calls: list[int] = []

    def counted(messages: list[Message]) -> str:
        a_calls.append(1)
        return flaky(messages)

    chain = FallbackChain(
        [CallableProvider(counted, name="a"), CallableProvider(answering("from b"), name="b")],
        breaker=BreakerSettings(failures=2, window_s=60, cooldown_s=30),
        clock=clock,
    )
    for _ in range(2):
        assert chain.complete(HELLO).provider == "b"
    assert chain.breakers[0] is not None and chain.breakers[0].state == "open"
    skipped = chain.complete(HELLO)
    assert len(a_calls) == 2  # not called while the circuit is open
    assert (skipped.trail[0].outcome, skipped.trail[0].error) == ("skipped", "circuit_open")

    clock.now += 31  # cooldown over: one probe, which fails and opens the circuit again
    assert chain.complete(HELLO).provider == "b" and len(a_calls) == 3
    assert chain.complete(HELLO).trail[0].outcome == "skipped" and len(a_calls) == 3

    clock.now += 31
    healthy["a"] = True
    assert chain.complete(HELLO).provider == "a" and len(a_calls) == 4
    assert chain.breakers[0].state == "closed"


def test_failures_outside_the_window_do_not_open_the_circuit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerSettings(failures=2, window_s=10, cooldown_s=5), clock)
    breaker.record_failure()
    clock.now += 11
    breaker.record_failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.record_failure()
    assert not breaker.allow() and breaker.state == "open"


class Streamer(BaseProvider):
    """Streams ``parts`` then fails with ``error`` (if any) instead of finishing."""

    def __init__(self, name: str, parts: list[str], error: ProviderError | None = None) -> None:
        self.name, self.parts, self.error = name, parts, error

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        raise NotImplementedError

    def _stream(self, messages: list[Message], options: RequestOptions):  # type: ignore[override]
        yield from (StreamChunk(text=part) for part in self.parts)
        if self.error is not None:
            raise self.error
        yield StreamChunk(
            completion=Completion(
                text="".join(self.parts), model=self.name, provider=self.name, latency_ms=1.0
            )
        )


def test_a_stream_falls_back_before_its_first_text_but_not_after() -> None:
    chain = FallbackChain([Streamer("a", [], ProviderTimeout("idle")), Streamer("b", ["x", "y"])])
    chunks = list(chain.stream(HELLO))
    assert "".join(c.text for c in chunks) == "xy"
    final = chunks[-1].completion
    assert final is not None and [a.outcome for a in final.trail] == ["failed", "ok"]

    broken = FallbackChain(
        [Streamer("a", ["par"], ProviderTimeout("idle")), Streamer("b", ["whole"])]
    )
    received: list[str] = []
    with pytest.raises(StreamInterrupted, match="began streaming"):
        for chunk in broken.stream(HELLO):
            received.append(chunk.text)
    assert received == ["par"]


def test_a_chain_names_the_member_that_streams_and_the_ones_passed_over() -> None:
    chain = FallbackChain([Streamer("a", [], ProviderTimeout("idle")), Streamer("b", ["x", "y"])])
    first, second, final = list(chain.stream(HELLO))
    assert (first.provider, second.provider) == ("b", "b")
    assert [(a.provider, a.error) for a in first.trail] == [("a", "timeout")]
    assert second.trail == () and final.completion is not None


def test_a_generator_function_streams_its_pieces_as_they_come() -> None:
    seen: list[str] = []

    def pieces(messages: list[Message]) -> object:
        for piece in ("one ", "two"):
            seen.append(piece)
            yield piece

    provider = CallableProvider(pieces, name="gen")
    stream = provider.stream(HELLO)
    assert next(stream).text == "one " and seen == ["one "]  # the second piece not made yet
    rest = list(stream)
    assert rest[0].text == "two" and rest[-1].completion is not None
    assert rest[-1].completion.text == "one two"
    assert provider.complete(HELLO).text == "one two"

    def broken(messages: list[Message]) -> object:
        yield "half"
        raise ValueError("lost the thread")

    with pytest.raises(ProviderError, match="raised ValueError: lost the thread"):
        list(CallableProvider(broken, name="broken").stream(HELLO))


def test_async_chain_and_async_stream_fall_through_too() -> None:
    chain = FallbackChain(
        [Streamer("a", [], ProviderConnectionError("refused")), Streamer("b", ["ok"])]
    )

    async def run() -> tuple[Completion | None, str]:
        text = "".join([chunk.text async for chunk in chain.astream(HELLO)])
        fallback = FallbackChain(
            [
                CallableProvider(failing(ProviderConnectionError("refused")), name="x"),
                CallableProvider(answering("y"), name="y"),
            ]
        )
        return await fallback.acomplete(HELLO), text

    completion, text = asyncio.run(run())
    assert text == "ok" and completion is not None and completion.provider == "y"


def test_chain_specs_build_members_in_order() -> None:
    chain = build_provider("chain:callable:tuneloop.demo.teacher:respond,builtin:tiny")
    assert isinstance(chain, FallbackChain)
    assert [m.name for m in chain.members] == [
        "callable:tuneloop.demo.teacher:respond",
        "builtin:tiny",
    ]
    with pytest.raises(ProviderError, match="no provider named 'nope'"):
        build_provider("provider:nope")
    with pytest.raises(ProviderError, match="unknown provider spec"):
        build_provider("magic:thing")


def test_config_refuses_unknown_members_and_chains_that_contain_themselves(
    tmp_path: Path,
) -> None:
    from tuneloop.config import load_config
    from tuneloop.errors import ConfigError

    path = tmp_path / "tuneloop.toml"
    path.write_text('[providers.a]\nkind = "chain"\nmembers = ["provider:missing"]\n')
    with pytest.raises(ConfigError, match="provider:missing, which is not configured"):
        load_config(path, environ={})
    path.write_text(
        '[providers.a]\nkind = "chain"\nmembers = ["provider:b"]\n'
        '[providers.b]\nkind = "chain"\nmembers = ["openai:gpt-4o", "provider:a"]\n'
    )
    with pytest.raises(ConfigError, match="chains contain each other: a → b → a"):
        load_config(path, environ={})


def test_config_refuses_secrets_in_provider_tables(tmp_path: Path) -> None:
    from tuneloop.config import load_config
    from tuneloop.errors import ConfigError

    path = tmp_path / "tuneloop.toml"
    path.write_text('[providers.x]\nkind = "openai"\nmodel = "m"\napi_key = "sk-123"\n')
    with pytest.raises(ConfigError, match="looks like a secret") as caught:
        load_config(path, environ={})
    assert "sk-123" not in str(caught.value)
    path.write_text(
        '[providers.x]\nkind = "openai"\nmodel = "m"\nheaders = { Authorization = "Bearer k" }\n'
    )
    with pytest.raises(ConfigError, match="headers.Authorization looks like a secret") as caught:
        load_config(path, environ={})
    assert "Bearer k" not in str(caught.value)


def test_backoff_grows_with_jitter_and_retry_after_wins() -> None:
    import random

    from tuneloop.providers.retry import RetryPolicy

    policy = RetryPolicy(max_retries=5, base_delay_s=1.0, max_delay_s=5.0, jitter=0.5)
    rng = random.Random(7)
    error = ProviderUnavailable("down")
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (4, 5.0)]:
        delays = {policy.delay(attempt, error, rng) for _ in range(20)}
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays) and len(delays) > 1
    assert policy.delay(0, RateLimited("slow", retry_after=12.5), rng) == 12.5


def test_retries_never_wait_past_the_deadline() -> None:
    import random

    from tuneloop.providers.retry import Deadline, RetryPolicy, retry_call

    clock = FakeClock()
    waits: list[float] = []
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    def call() -> str:
        calls.append(clock.now)
        clock.now += 0.5  # each attempt takes half a second to fail
        raise ProviderUnavailable("down", status=503)

    retried: list[str] = []
    with pytest.raises(ProviderUnavailable):
        retry_call(
            call,
            name="p",
            policy=RetryPolicy(max_retries=50, base_delay_s=0.25, max_delay_s=1.0, jitter=0.0),
            deadline=Deadline(4.0, clock),
            rng=random.Random(0),
            on_retry=lambda error: retried.append(error_kind(error)),
            sleep=sleep,
        )
    # attempts at 0, 0.75, 1.75, 3.25; the next wait (1 s) would end past 4 s, so it stops
    assert calls == [1000.0, 1000.75, 1001.75, 1003.25]
    assert waits == [0.25, 0.5, 1.0] and retried == ["unavailable"] * 3
    assert clock.now - 1000 <= 4.0


def test_chain_settings_from_config_reach_the_chain(tmp_path: Path) -> None:
    from tuneloop.config import load_config

    path = tmp_path / "tuneloop.toml"
    path.write_text(
        "[providers.fast]\n"
        'kind = "chain"\n'
        'members = ["callable:tuneloop.demo.teacher:respond", "builtin:tiny"]\n'
        'fallback_on = ["timeout", "unavailable"]\n'
        "timeout_s = 12\n"
        "breaker = { failures = 5, window_s = 10, cooldown_s = 2 }\n"
        "[providers.plain]\n"
        'kind = "chain"\n'
        'members = ["provider:fast"]\n'
        "breaker = { enabled = false }\n"
    )
    config = load_config(path, environ={})
    fast = build_provider("provider:fast", providers=config.providers)
    assert isinstance(fast, FallbackChain) and fast.name == "fast"
    assert fast.fallback_on == ("timeout", "unavailable") and fast.timeout_s == 12
    assert fast.breakers[0] is not None
    assert fast.breakers[0].settings == BreakerSettings(failures=5, window_s=10, cooldown_s=2)
    plain = build_provider("provider:plain", providers=config.providers)
    assert isinstance(plain, FallbackChain) and plain.breakers == (None,)
    assert plain.timeout_s is None  # no deadline of its own unless one is set
