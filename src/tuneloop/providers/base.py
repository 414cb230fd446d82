"""The one interface for "something that answers messages", and the answer it gives.

A provider answers a list of chat messages four ways: ``complete`` (blocking), ``acomplete``
(async), and ``stream``/``astream``, which yield text deltas as they arrive and, last, one chunk
that carries the whole ``Completion`` (usage, cost, finish reason). Request settings travel as one
``RequestOptions`` object; ``max_tokens=`` and ``temperature=`` stay as shortcuts for it.

``BaseProvider`` gives a provider that only knows how to answer in one piece (``_complete``) the
other three ways: async in a worker thread, a stream of one chunk. Providers that can do better
(HTTP clients with real async and SSE) override ``_acomplete``, ``_stream`` and ``_astream``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]
CHARS_PER_TOKEN = 4  # the estimate used when a provider reports no usage


@dataclass(frozen=True)
class RequestOptions:
    """What to ask for besides the messages. ``None`` means "the provider's default".

    ``response_format`` and ``tools`` use OpenAI's shapes (Anthropic providers translate tools);
    ``extra_body`` is merged into the request body as-is, for parameters we do not model
    (``top_k``, ``repetition_penalty``, ``reasoning_effort``…). ``timeout_s`` shortens the
    provider's deadline for this call; a chain uses it to pass down what is left of its own.
    ``idempotency_key`` travels as the ``Idempotency-Key`` header of HTTP providers: an upstream
    that honours it answers a repeat (a retry, or a resumed run) with the answer it gave first.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    response_format: Mapping[str, Any] | None = None
    tools: tuple[Mapping[str, Any], ...] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    extra_body: Mapping[str, Any] | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None

    def with_overrides(self, **changes: Any) -> RequestOptions:
        """A copy with the given fields replaced, skipping those given as ``None``."""
        given = {key: value for key, value in changes.items() if value is not None}
        return dataclasses.replace(self, **given) if given else self


DEFAULT_OPTIONS = RequestOptions()


def resolve_options(
    options: RequestOptions | None, max_tokens: int | None, temperature: float | None
) -> RequestOptions:
    """One ``RequestOptions`` from the object and the two keyword shortcuts (which win)."""
    return (options or DEFAULT_OPTIONS).with_overrides(
        max_tokens=max_tokens, temperature=temperature
    )


@dataclass(frozen=True)
class Attempt:
    """One provider tried for a call: by a chain, or a retry of one provider.

    ``outcome`` is ``ok``, ``failed`` or ``skipped`` (circuit open); ``error`` is the error's
    kind (``timeout``, ``rate_limited``, ``invalid_output``…) and ``detail`` its message, which
    never holds a key, a prompt or an answer.
    """

    provider: str
    outcome: str
    error: str | None = None
    detail: str | None = None
    latency_ms: float = 0.0

    def describe(self) -> str:
        if self.outcome == "ok":
            return f"{self.provider}: ok ({self.latency_ms:.0f} ms)"
        detail = (self.detail or "").removeprefix(f"{self.provider}: ")
        return f"{self.provider}: {self.outcome} ({self.error}: {detail})"


@dataclass(frozen=True)
class Completion:
    """A provider's answer and what it cost.

    ``prompt_tokens``/``completion_tokens`` are the input and output tokens from the provider's
    usage report, or estimated from the text (``tokens_estimated``) when it gave none.
    ``provider`` and ``model`` name who answered, which in a chain need not be the first member;
    ``trail`` lists every provider tried before (and including) it. ``reasoning`` holds what
    output normalisation took out of a ``{"reasoning": …, "layout": …}`` answer.
    ``tool_calls`` are in OpenAI's shape (``{"id", "type": "function", "function": {...}}``).
    """

    text: str
    model: str
    provider: str
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    response_id: str | None = None
    trail: tuple[Attempt, ...] = ()
    reasoning: str | None = None
    tokens_estimated: bool = False
    tool_calls: tuple[Mapping[str, Any], ...] = ()

    @property
    def input_tokens(self) -> int | None:
        return self.prompt_tokens

    @property
    def output_tokens(self) -> int | None:
        return self.completion_tokens

    @property
    def tokens_per_s(self) -> float | None:
        if not self.completion_tokens or self.latency_ms <= 0:
            return None
        return self.completion_tokens / (self.latency_ms / 1000)

    def replace(self, **changes: Any) -> Completion:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StreamChunk:
    """One piece of a stream: a text delta, or (last) the finished ``completion``.

    A chain names the member a text delta comes from (``provider``) and, on that member's first
    delta, the members it passed over before (``trail``): a server that forwards the stream
    knows who answers before the answer is complete.
    """

    text: str = ""
    completion: Completion | None = None
    provider: str | None = None
    trail: tuple[Attempt, ...] = ()


@runtime_checkable
class Provider(Protocol):
    """Answers chat messages. Implementations raise the ``ProviderError`` subclasses of
    ``tuneloop.providers.errors`` on failure."""

    name: str

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> Completion: ...

    async def acomplete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> Completion: ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> Iterator[StreamChunk]: ...

    def astream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> AsyncIterator[StreamChunk]: ...


class BaseProvider:
    """The four public methods over ``_complete`` (required) and optional faster variants."""

    name: str = "provider"

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> Completion:
        return self._complete(list(messages), resolve_options(options, max_tokens, temperature))

    async def acomplete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> Completion:
        return await self._acomplete(
            list(messages), resolve_options(options, max_tokens, temperature)
        )

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> Iterator[StreamChunk]:
        return self._stream(list(messages), resolve_options(options, max_tokens, temperature))

    def astream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> AsyncIterator[StreamChunk]:
        return self._astream(list(messages), resolve_options(options, max_tokens, temperature))

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        raise NotImplementedError

    async def _acomplete(self, messages: list[Message], options: RequestOptions) -> Completion:
        return await asyncio.to_thread(self._complete, messages, options)

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        completion = self._complete(messages, options)
        if completion.text:
            yield StreamChunk(text=completion.text)
        yield StreamChunk(completion=completion)

    async def _astream(
        self, messages: list[Message], options: RequestOptions
    ) -> AsyncIterator[StreamChunk]:
        """The sync stream, each step in a worker thread so the event loop never blocks."""
        chunks = self._stream(messages, options)
        done = object()
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, done)
                if chunk is done:
                    return
                assert isinstance(chunk, StreamChunk)
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for providers that report no usage."""
    return max(1, len(text) // CHARS_PER_TOKEN) if text else 0


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    return sum(estimate_tokens(content_text(message.get("content"))) for message in messages)


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or OpenAI-style parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return str(content)
