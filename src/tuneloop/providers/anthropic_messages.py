"""Anthropic's messages API through the official ``anthropic`` client.

Chat messages in OpenAI's shape are translated: system messages go to the ``system`` field,
``max_tokens`` is always sent (the API requires it), OpenAI-style function tools become
Anthropic tools, text blocks of the answer are joined, and stop reasons are reported as OpenAI's
finish reasons so callers see one vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from tuneloop.providers.base import (
    Completion,
    Message,
    RequestOptions,
    StreamChunk,
    content_text,
)
from tuneloop.providers.errors import BadRequest, ProviderError
from tuneloop.providers.remote import CONNECT_TIMEOUT_S, RemoteProvider, error_detail
from tuneloop.providers.retry import Deadline

DEFAULT_MAX_TOKENS = 4096
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str | None:
    return None if stop_reason is None else FINISH_REASONS.get(stop_reason, stop_reason)


def split_system(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system text, the other messages in Anthropic's shape)."""
    system = [content_text(m.get("content")) for m in messages if m.get("role") == "system"]
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            continue
        if role == "tool":  # an OpenAI tool result → Anthropic's tool_result block
            turns.append(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": message.get("tool_call_id", ""),
                            "content": content_text(message.get("content")),
                        }
                    ],
                }
            )
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": message.get("content") or ""})
        else:
            raise BadRequest(f"message role {role!r} is not supported by the Anthropic API")
    return ("\n\n".join(part for part in system if part) or None), turns


def anthropic_tools(tools: tuple[Any, ...]) -> list[dict[str, Any]]:
    """OpenAI function tools → Anthropic tools (others pass through unchanged)."""
    converted = []
    for tool in tools:
        function = tool.get("function") if tool.get("type") == "function" else None
        if function is None:
            converted.append(dict(tool))
            continue
        converted.append(
            {
                "name": function["name"],
                "description": function.get("description", ""),
                "input_schema": function.get("parameters") or {"type": "object"},
            }
        )
    return converted


class AnthropicProvider(RemoteProvider):
    """``/v1/messages``, in one piece or as its event stream."""

    def _make_client(self, api_key: str, *, asynchronous: bool) -> Any:
        import anthropic

        client_class = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
        return client_class(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.settings.timeout_s,
            default_headers=self.settings.headers or None,
        )

    def _timeout(self, deadline: Deadline, *, stream: bool) -> Any:
        import anthropic

        total = deadline.cap(self.settings.timeout_s)
        read = deadline.cap(self.settings.idle_timeout_s) if stream else total
        return anthropic.Timeout(total, connect=min(CONNECT_TIMEOUT_S, total), read=read)

    def _request(self, messages: list[Message], options: RequestOptions) -> dict[str, Any]:
        system, turns = split_system(messages)
        body = self.body(options)
        max_tokens = options.max_tokens or body.pop("max_tokens", None) or DEFAULT_MAX_TOKENS
        body.pop("max_tokens", None)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": int(max_tokens),
        }
        if system:
            request["system"] = system
        if options.stop:
            request["stop_sequences"] = list(options.stop)
        if options.tools:
            request["tools"] = anthropic_tools(options.tools)
        if isinstance(options.tool_choice, str):
            choices = {
                "auto": {"type": "auto"},
                "required": {"type": "any"},
                "none": {"type": "none"},
            }
            request["tool_choice"] = choices.get(options.tool_choice, {"type": "auto"})
        for key in request:  # this call's settings win over the configured body
            body.pop(key, None)
        # Sampling settings travel in the body: not every client version types them.
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.top_p is not None:
            body["top_p"] = options.top_p
        request["extra_body"] = body or None
        request["extra_headers"] = self.call_headers(options)
        return request

    def _completion(self, messages: list[Message], response: Any) -> Completion:
        text = "".join(block.text for block in response.content if block.type == "text")
        tool_calls = tuple(
            {
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": json.dumps(block.input)},
            }
            for block in response.content
            if block.type == "tool_use"
        )
        usage = response.usage
        prompt, completion, estimated = self.usage(
            messages,
            text,
            _input_tokens(usage) if usage else None,
            usage.output_tokens if usage else None,
        )
        return Completion(
            text=text,
            model=response.model or self.model,
            provider=self.name,
            latency_ms=0.0,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=self.cost(prompt, completion),
            finish_reason=finish_reason(response.stop_reason),
            response_id=response.id,
            tokens_estimated=estimated,
            tool_calls=tool_calls,
        )

    def _call(self, messages: list[Message], options: RequestOptions, timeout: Any) -> Completion:
        response = self.client().messages.create(
            **self._request(messages, options), timeout=timeout
        )
        return self._completion(messages, response)

    async def _acall(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> Completion:
        response = await self.async_client().messages.create(
            **self._request(messages, options), timeout=timeout
        )
        return self._completion(messages, response)

    def _call_stream(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> Iterator[StreamChunk]:
        events = self.client().messages.create(
            **self._request(messages, options), stream=True, timeout=timeout
        )
        state = _StreamState(self.model)
        with events:
            for event in events:
                text = state.add(event)
                if text:
                    yield StreamChunk(text=text)
        yield StreamChunk(completion=self._streamed(messages, state))

    async def _acall_stream(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> AsyncIterator[StreamChunk]:
        events = await self.async_client().messages.create(
            **self._request(messages, options), stream=True, timeout=timeout
        )
        state = _StreamState(self.model)
        async with events:
            async for event in events:
                text = state.add(event)
                if text:
                    yield StreamChunk(text=text)
        yield StreamChunk(completion=self._streamed(messages, state))

    def _streamed(self, messages: list[Message], state: _StreamState) -> Completion:
        if not state.stopped:
            raise self.malformed(ValueError("the event stream ended before message_stop"))
        text = "".join(state.parts)
        prompt, completion, estimated = self.usage(
            messages, text, state.input_tokens, state.output_tokens
        )
        return Completion(
            text=text,
            model=state.model,
            provider=self.name,
            latency_ms=0.0,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=self.cost(prompt, completion),
            finish_reason=finish_reason(state.stop_reason),
            response_id=state.response_id,
            tokens_estimated=estimated,
        )

    def map_error(self, exc: BaseException) -> ProviderError:
        import anthropic

        if isinstance(exc, anthropic.APITimeoutError):
            return self.map_transport(exc, timeout=True)
        if isinstance(exc, anthropic.APIConnectionError):
            return self.map_transport(exc, timeout=False)
        if isinstance(exc, anthropic.APIStatusError):
            return self.map_status(exc.status_code, error_detail(exc), exc.response.headers)
        if isinstance(exc, anthropic.APIError):  # an error event inside the stream
            return self.malformed(exc)
        mapped = self.map_common(exc)
        if mapped is None:
            raise exc
        return mapped


def _input_tokens(usage: Any) -> int | None:
    """Input tokens including those read from or written to the prompt cache."""
    if usage.input_tokens is None:
        return None
    return (
        usage.input_tokens
        + (getattr(usage, "cache_creation_input_tokens", None) or 0)
        + (getattr(usage, "cache_read_input_tokens", None) or 0)
    )


class _StreamState:
    """What the events of one streamed message add up to."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.parts: list[str] = []
        self.stop_reason: str | None = None
        self.response_id: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.stopped = False

    def add(self, event: Any) -> str:
        kind = event.type
        if kind == "message_start":
            self.response_id = event.message.id
            self.model = event.message.model or self.model
            if event.message.usage is not None:
                self.input_tokens = _input_tokens(event.message.usage)
                self.output_tokens = event.message.usage.output_tokens
        elif kind == "content_block_delta" and event.delta.type == "text_delta":
            self.parts.append(event.delta.text)
            return str(event.delta.text)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            if event.usage is not None and event.usage.output_tokens is not None:
                self.output_tokens = event.usage.output_tokens
        elif kind == "message_stop":
            self.stopped = True
        return ""
