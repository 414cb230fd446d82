"""Remote providers against fake servers on loopback, talked to by the official clients."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fakes import FakeAPI, Reply

from tuneloop.config import PriceConfig, ProviderSettings
from tuneloop.providers import (
    AllProvidersFailed,
    AuthenticationError,
    BadRequest,
    Completion,
    FallbackChain,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestOptions,
    StreamInterrupted,
    build_from_settings,
    build_provider,
)
from tuneloop.providers.base import StreamChunk
from tuneloop.providers.prices import PRICES, price_for
from tuneloop.providers.remote import RemoteProvider, parse_retry_after

SECRET = "sk-test-9f8e7d6c5b4a-SECRET"
HELLO = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Say hello."},
]


def remote(fake: FakeAPI, kind: str, model: str = "gpt-4o-mini", **changes: Any) -> Any:
    settings = ProviderSettings(
        kind=kind,
        model=model,
        base_url=fake.base_url,  # type: ignore[arg-type]
        api_key_env="FAKE_KEY",
        **changes,
    )
    return build_from_settings(f"{kind}:{model}", settings)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", SECRET)


def collect(chunks: Any) -> tuple[str, Completion]:
    parts, final = [], None
    for chunk in chunks:
        parts.append(chunk.text)
        final = chunk.completion or final
    assert final is not None
    return "".join(parts), final


async def acollect(chunks: Any) -> tuple[str, Completion]:
    parts, final = [], None
    async for chunk in chunks:
        parts.append(chunk.text)
        final = chunk.completion or final
    assert final is not None
    return "".join(parts), final


# -- each spec kind against its fake ---------------------------------------------------------


def test_openai_spec_answers_with_usage_cost_and_id(
    fake_openai: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    fake_openai.push(Reply(text="Hi there!", usage=(1000, 500)))
    completion = build_provider("openai:gpt-4o-mini").complete(
        HELLO, max_tokens=50, temperature=0.2
    )
    assert completion.text == "Hi there!" and completion.provider == "openai:gpt-4o-mini"
    assert (completion.prompt_tokens, completion.completion_tokens) == (1000, 500)
    assert completion.cost_usd == pytest.approx(1000 * 0.15 / 1e6 + 500 * 0.60 / 1e6)
    assert completion.finish_reason == "stop" and not completion.tokens_estimated
    assert (completion.response_id or "").startswith("chatcmpl-fake-")
    sent = fake_openai.requests[0]
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["messages"] == HELLO
    assert sent.body["max_completion_tokens"] == 50 and sent.body["temperature"] == 0.2


def test_openai_streams_deltas_then_usage(fake_openai: FakeAPI) -> None:
    fake_openai.push(Reply(text="A streamed answer.", usage=(20, 6), chunk_chars=4))
    provider = remote(fake_openai, "openai")
    chunks = list(provider.stream(HELLO))
    assert len([c for c in chunks if c.text]) == 5  # "A st", "ream", "ed a", "nswe", "r."
    text, final = collect(chunks)
    assert text == final.text == "A streamed answer."
    assert (final.prompt_tokens, final.completion_tokens) == (20, 6)
    assert fake_openai.requests[0].body["stream_options"] == {"include_usage": True}


def test_openai_async_call_and_async_stream(fake_openai: FakeAPI) -> None:
    provider = remote(fake_openai, "openai")
    fake_openai.push(Reply(text="async one"), Reply(text="async two"))

    async def run() -> tuple[Completion, tuple[str, Completion]]:
        return await provider.acomplete(HELLO), await acollect(provider.astream(HELLO))

    first, (text, streamed) = asyncio.run(run())
    assert first.text == "async one" and text == streamed.text == "async two"
    assert asyncio.run(provider.acomplete(HELLO)).text  # a second event loop works too


def test_together_spec_uses_max_tokens(
    fake_together: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_BASE_URL", fake_together.base_url)
    monkeypatch.setenv("TOGETHER_API_KEY", SECRET)
    model = "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"
    fake_together.push(Reply(text='{"type": "FRAME"}', usage=(100, 50)))
    completion = build_provider(f"together:{model}").complete(HELLO, max_tokens=64)
    assert completion.text == '{"type": "FRAME"}' and completion.model == model
    assert completion.cost_usd == pytest.approx(150 * 0.18 / 1e6)
    assert fake_together.requests[0].body["max_tokens"] == 64
    assert "max_completion_tokens" not in fake_together.requests[0].body


def test_openrouter_spec(fake_openai: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    completion = build_provider("openrouter:anthropic/claude-sonnet-4.5").complete(HELLO)
    assert completion.text and completion.cost_usd == pytest.approx(12 * 3.0 / 1e6 + 7 * 15.0 / 1e6)
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_openai_compatible_spec_needs_no_key(
    fake_together: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_together.push(Reply(text="from vllm", usage=None))
    provider = build_provider(f"openai-compatible:{fake_together.base_url}#my-model")
    completion = provider.complete(HELLO)
    assert completion.text == "from vllm" and completion.tokens_estimated
    assert completion.cost_usd is None  # an unknown model has no price
    assert completion.completion_tokens == 2  # estimated from 9 characters


def test_anthropic_spec_maps_system_max_tokens_and_stop_reason(
    fake_anthropic: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    fake_anthropic.push(Reply(text="Cut short", finish_reason="length", usage=(200, 100)))
    completion = build_provider("anthropic:claude-haiku-4-5").complete(HELLO)
    assert completion.text == "Cut short" and completion.finish_reason == "length"
    assert completion.cost_usd == pytest.approx(200 * 1 / 1e6 + 100 * 5 / 1e6)
    assert (completion.response_id or "").startswith("msg_fake_")
    sent = fake_anthropic.requests[0]
    assert SECRET in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert sent.body["system"] == "Answer briefly."
    assert sent.body["messages"] == [{"role": "user", "content": "Say hello."}]
    assert sent.body["max_tokens"] == 4096


def test_anthropic_streams_and_answers_async(fake_anthropic: FakeAPI) -> None:
    provider = remote(fake_anthropic, "anthropic", "claude-haiku-4-5")
    fake_anthropic.push(Reply(text="Streaming from Claude.", usage=(30, 9)))
    text, final = collect(provider.stream(HELLO, max_tokens=100))
    assert text == final.text == "Streaming from Claude."
    assert (final.prompt_tokens, final.completion_tokens, final.finish_reason) == (30, 9, "stop")
    assert fake_anthropic.requests[0].body["max_tokens"] == 100

    fake_anthropic.push(Reply(text="one"), Reply(text="two"))

    async def run() -> tuple[Completion, tuple[str, Completion]]:
        return await provider.acomplete(HELLO), await acollect(provider.astream(HELLO))

    first, (second, _) = asyncio.run(run())
    assert (first.text, second) == ("one", "two")


# -- errors map to the right class -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (429, RateLimited),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (400, BadRequest),
        (404, BadRequest),
        (408, ProviderTimeout),
    ],
)
def test_http_errors_map_to_their_class(
    kind: str, status: int, expected: type, request: pytest.FixtureRequest
) -> None:
    fake: FakeAPI = request.getfixturevalue(f"fake_{kind}")
    fake.push(Reply.error(status, "scripted failure", retry_after=7 if status == 429 else None))
    provider = remote(fake, kind, max_retries=0)
    with pytest.raises(expected) as caught:
        provider.complete(HELLO)
    assert f"HTTP {status}" in str(caught.value) and "scripted failure" in str(caught.value)
    if status == 429:
        assert caught.value.retry_after == 7
    if expected is AuthenticationError:
        assert caught.value.env_var == "FAKE_KEY" and "FAKE_KEY" in str(caught.value)


def test_a_missing_key_names_the_variable(
    fake_openai: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAKE_KEY")
    with pytest.raises(AuthenticationError, match="FAKE_KEY is not set"):
        remote(fake_openai, "openai").complete(HELLO)
    assert fake_openai.requests == []


def test_an_unreachable_server_is_a_connection_error() -> None:
    settings = ProviderSettings(
        kind="openai-compatible", model="m", base_url="http://127.0.0.1:9/v1", max_retries=0
    )
    with pytest.raises(ProviderConnectionError, match="cannot reach"):
        build_from_settings("down", settings).complete(HELLO)


# -- retries and deadlines -------------------------------------------------------------------


def test_retryable_failures_are_retried_and_show_in_the_trail(fake_openai: FakeAPI) -> None:
    fake_openai.push(Reply.error(503), Reply.error(500), Reply(text="third time"))
    provider = remote(fake_openai, "openai", max_retries=2)
    provider.policy = type(provider.policy)(max_retries=2, base_delay_s=0.01)
    completion = provider.complete(HELLO)
    assert completion.text == "third time" and len(fake_openai.requests) == 3
    assert [(a.outcome, a.error) for a in completion.trail] == [
        ("failed", "unavailable"),
        ("failed", "unavailable"),
        ("ok", None),
    ]


def test_final_failures_are_not_retried(fake_anthropic: FakeAPI) -> None:
    fake_anthropic.push(Reply.error(400, "max_tokens too large"), Reply(text="unused"))
    with pytest.raises(BadRequest, match="max_tokens too large"):
        remote(fake_anthropic, "anthropic", max_retries=3).complete(HELLO)
    assert len(fake_anthropic.requests) == 1


def test_a_retry_after_past_the_deadline_is_not_waited_for(fake_openai: FakeAPI) -> None:
    fake_openai.push(Reply.error(429, retry_after=30), Reply(text="unused"))
    provider = remote(fake_openai, "openai", max_retries=5, timeout_s=2)
    with pytest.raises(RateLimited) as caught:
        provider.complete(HELLO)
    assert caught.value.retry_after == 30 and len(fake_openai.requests) == 1


def test_retry_after_headers_are_read() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert parse_retry_after({}) is None


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_retries_stop_at_the_deadline(kind: str, request: pytest.FixtureRequest) -> None:
    fake: FakeAPI = request.getfixturevalue(f"fake_{kind}")
    fake.default = Reply.hang(3)
    provider = remote(fake, kind, max_retries=5, timeout_s=0.4)
    with pytest.raises(ProviderTimeout):
        provider.complete(HELLO)
    assert len(fake.requests) == 1  # the hang used the whole deadline: no time for a retry

    async def run() -> Completion:
        return await provider.acomplete(HELLO)

    with pytest.raises(ProviderTimeout):
        asyncio.run(run())


def test_a_call_option_shortens_the_deadline(fake_together: FakeAPI) -> None:
    fake_together.push(Reply.hang(3))
    provider = remote(fake_together, "together", timeout_s=60, max_retries=0)
    with pytest.raises(ProviderTimeout):
        provider.complete(HELLO, options=RequestOptions(timeout_s=0.3))


# -- streams: stalls and malformed events ----------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_that_stalls_after_text_is_interrupted(
    kind: str, request: pytest.FixtureRequest
) -> None:
    fake: FakeAPI = request.getfixturevalue(f"fake_{kind}")
    fake.push(Reply(text="partial answer that stalls", stall_after=1, stall_s=3))
    provider = remote(fake, kind, idle_timeout_s=0.3, max_retries=2)
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as caught:
        for chunk in provider.stream(HELLO):
            received.append(chunk.text)
    assert "".join(received) == "parti" and "timeout" in str(caught.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stall_before_any_text_is_an_idle_timeout(
    kind: str, request: pytest.FixtureRequest
) -> None:
    fake: FakeAPI = request.getfixturevalue(f"fake_{kind}")
    fake.push(Reply(stall_after=0, stall_s=3))
    provider = remote(fake, kind, idle_timeout_s=0.3, max_retries=0)
    with pytest.raises(ProviderTimeout):
        list(provider.stream(HELLO))

    fake.push(Reply(stall_after=0, stall_s=3))

    async def run() -> Any:
        return await acollect(provider.astream(HELLO))

    with pytest.raises(ProviderTimeout):
        asyncio.run(run())


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_malformed_events_are_reported(kind: str, request: pytest.FixtureRequest) -> None:
    fake: FakeAPI = request.getfixturevalue(f"fake_{kind}")
    fake.push(Reply(malformed_at=0))
    provider = remote(fake, kind, max_retries=0)
    with pytest.raises(ProviderUnavailable, match="malformed"):
        list(provider.stream(HELLO))
    fake.push(Reply(text="good start then bad", malformed_at=1))
    with pytest.raises(StreamInterrupted, match="malformed"):
        list(provider.stream(HELLO))


# -- chains over real wire formats -----------------------------------------------------------


def test_a_chain_falls_from_together_to_anthropic(
    fake_together: FakeAPI, fake_anthropic: FakeAPI
) -> None:
    fake_together.default = Reply.error(503, "upstream overloaded")
    fake_anthropic.push(Reply(text="Claude answers"), Reply(text="Claude streams"))
    chain = FallbackChain(
        [
            remote(fake_together, "together", "ft-model", max_retries=0),
            remote(fake_anthropic, "anthropic", "claude-opus-4-5"),
        ],
        name="crafter",
    )
    completion = chain.complete(HELLO)
    assert (
        completion.text == "Claude answers" and completion.provider == "anthropic:claude-opus-4-5"
    )
    assert [(a.provider, a.outcome, a.error) for a in completion.trail] == [
        ("together:ft-model", "failed", "unavailable"),
        ("anthropic:claude-opus-4-5", "ok", None),
    ]
    assert "upstream overloaded" in (completion.trail[0].detail or "")
    text, final = collect(chain.stream(HELLO))
    assert text == "Claude streams" and final.trail[0].error == "unavailable"


def test_a_chain_of_failing_servers_says_what_each_did(
    fake_openai: FakeAPI, fake_anthropic: FakeAPI
) -> None:
    fake_openai.default = Reply.error(401)
    fake_anthropic.default = Reply.hang(3)
    chain = FallbackChain(
        [
            remote(fake_openai, "openai", max_retries=0),
            remote(fake_anthropic, "anthropic", "claude-haiku-4-5", timeout_s=0.3, max_retries=0),
        ]
    )
    with pytest.raises(AllProvidersFailed) as caught:
        chain.complete(HELLO)
    assert [a.error for a in caught.value.trail] == ["authentication", "timeout"]


# -- keys never leak -------------------------------------------------------------------------


def test_keys_never_appear_in_logs_errors_or_reprs(
    fake_openai: FakeAPI,
    fake_anthropic: FakeAPI,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_openai.push(
        Reply.error(401, f"Incorrect API key provided: {SECRET}"), Reply(), Reply(text="streamed")
    )
    fake_anthropic.push(Reply.error(500), Reply(text="fallback"))
    openai_provider = remote(fake_openai, "openai", max_retries=0)
    anthropic_provider = remote(fake_anthropic, "anthropic", "claude-haiku-4-5", max_retries=0)
    seen: list[str] = [repr(openai_provider), repr(anthropic_provider)]
    with pytest.raises(AuthenticationError) as auth:
        openai_provider.complete(HELLO)
    seen.append(str(auth.value))
    seen.append(repr(openai_provider.complete(HELLO)))
    seen.extend(chunk.text for chunk in openai_provider.stream(HELLO))
    chain = FallbackChain([anthropic_provider, openai_provider])
    seen.append(repr(chain.complete(HELLO)))
    print("\n".join(seen))
    captured = capsys.readouterr()
    assert "***" in str(auth.value)  # the server echoed the key; we scrubbed it
    for text in [*seen, caplog.text, captured.out, captured.err]:
        assert SECRET not in text
    assert any(
        "HTTP Request" in record.getMessage() or "Request options" in record.getMessage()
        for record in caplog.records
    )  # the clients did log: the check saw real logs


# -- prices ----------------------------------------------------------------------------------


def test_prices_match_by_longest_prefix_and_can_be_overridden(fake_openai: FakeAPI) -> None:
    assert price_for("gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert price_for("gpt-4o-2024-08-06") == PRICES["gpt-4o"]
    assert price_for("claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4-5"]
    assert price_for("openai/gpt-4.1-mini") == PRICES["gpt-4.1-mini"]
    assert price_for("my-fine-tune") is None
    fake_openai.push(Reply(usage=(2_000_000, 1_000_000)))
    provider = remote(
        fake_openai, "openai", "ft:gpt-4o-mini:acme", prices=PriceConfig(input=0.3, output=1.2)
    )
    assert provider.complete(HELLO).cost_usd == pytest.approx(0.6 + 1.2)


def test_a_provider_error_is_one_line_and_never_holds_the_prompt(fake_openai: FakeAPI) -> None:
    fake_openai.push(Reply.error(400, "bad\nrequest\nbody"))
    with pytest.raises(ProviderError) as caught:
        remote(fake_openai, "openai", max_retries=0).complete(
            [{"role": "user", "content": "my private prompt"}]
        )
    assert "\n" not in str(caught.value) and "private" not in str(caught.value)
    assert isinstance(remote(fake_openai, "openai"), RemoteProvider)
    assert StreamChunk().text == ""
