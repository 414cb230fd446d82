"""OpenAI's chat completions API through the official ``openai`` client: OpenAI itself,
Together, OpenRouter, and any compatible server (vLLM, Ollama, LM Studio, tuneloop's gateway)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from tuneloop.providers.base import Completion, Message, RequestOptions, StreamChunk
from tuneloop.providers.errors import ProviderError
from tuneloop.providers.remote import CONNECT_TIMEOUT_S, RemoteProvider, error_detail
from tuneloop.providers.retry import Deadline


class OpenAIChatProvider(RemoteProvider):
    """``/chat/completions``, in one piece or as server-sent events with usage at the end."""

    def _make_client(self, api_key: str, *, asynchronous: bool) -> Any:
        import openai

        client_class = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        return client_class(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.settings.timeout_s,
            default_headers=self.settings.headers or None,
        )

    def _timeout(self, deadline: Deadline, *, stream: bool) -> Any:
        import openai

        total = deadline.cap(self.settings.timeout_s)
        read = deadline.cap(self.settings.idle_timeout_s) if stream else total
        return openai.Timeout(total, connect=min(CONNECT_TIMEOUT_S, total), read=read)

    def _request(
        self, messages: list[Message], options: RequestOptions, *, stream: bool
    ) -> dict[str, Any]:
        """The request body: configured parameters, then this call's options on top."""
        body = self.body(options)
        if options.max_tokens is not None:
            # OpenAI's newer models take only max_completion_tokens; other servers max_tokens.
            key = "max_completion_tokens" if self.kind == "openai" else "max_tokens"
            body.pop(
                "max_tokens" if key == "max_completion_tokens" else "max_completion_tokens", None
            )
            body[key] = options.max_tokens
        for field, value in (
            ("temperature", options.temperature),
            ("top_p", options.top_p),
            ("stop", list(options.stop) if options.stop else None),
            ("response_format", options.response_format),
            ("tools", list(options.tools) if options.tools else None),
            ("tool_choice", options.tool_choice),
        ):
            if value is not None:
                body[field] = value
        if stream:
            body.setdefault("stream_options", {"include_usage": True})
        return body

    def _completion(self, messages: list[Message], response: Any) -> Completion:
        if not response.choices:
            raise ProviderError(f"{self.name}: the response has no choices")
        choice = response.choices[0]
        text = choice.message.content or ""
        tool_calls = tuple(call.model_dump() for call in (choice.message.tool_calls or ()))
        usage = response.usage
        prompt, completion, estimated = self.usage(
            messages,
            text,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
        )
        return Completion(
            text=text,
            model=response.model or self.model,
            provider=self.name,
            latency_ms=0.0,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=self.cost(prompt, completion),
            finish_reason=choice.finish_reason,
            response_id=response.id,
            tokens_estimated=estimated,
            tool_calls=tool_calls,
        )

    def _post(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> tuple[str, dict[str, Any]]:
        """The path and arguments of one non-streamed call, for the client's ``post``.

        The body goes as built, not through ``chat.completions.create``: that walks every
        parameter and message against the SDK's typed-dict annotations first, which costs more
        CPU per call (about 0.6 ms) than the rest of our side of the call together. The result
        and errors are the same: ``post`` is what ``create`` calls after that walk.
        """
        from openai.types.chat import ChatCompletion

        body = {"model": self.model, "messages": messages}
        body.update(self._request(messages, options, stream=False))
        request_options: dict[str, Any] = {"timeout": timeout}
        headers = self.call_headers(options)
        if headers:
            request_options["headers"] = headers
        return "/chat/completions", {
            "body": body,
            "cast_to": ChatCompletion,
            "options": request_options,
        }

    def _call(self, messages: list[Message], options: RequestOptions, timeout: Any) -> Completion:
        path, arguments = self._post(messages, options, timeout)
        response = self.client().post(path, **arguments)
        return self._completion(messages, response)

    async def _acall(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> Completion:
        path, arguments = self._post(messages, options, timeout)
        response = await self.async_client().post(path, **arguments)
        return self._completion(messages, response)

    def _call_stream(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> Iterator[StreamChunk]:
        events = self.client().chat.completions.create(
            model=self.model,
            messages=messages,
            stream=True,
            extra_body=self._request(messages, options, stream=True),
            extra_headers=self.call_headers(options),
            timeout=timeout,
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
        events = await self.async_client().chat.completions.create(
            model=self.model,
            messages=messages,
            stream=True,
            extra_body=self._request(messages, options, stream=True),
            extra_headers=self.call_headers(options),
            timeout=timeout,
        )
        state = _StreamState(self.model)
        async with events:
            async for event in events:
                text = state.add(event)
                if text:
                    yield StreamChunk(text=text)
        yield StreamChunk(completion=self._streamed(messages, state))

    def _streamed(self, messages: list[Message], state: _StreamState) -> Completion:
        text = "".join(state.parts)
        prompt, completion, estimated = self.usage(
            messages, text, state.prompt_tokens, state.completion_tokens
        )
        return Completion(
            text=text,
            model=state.model,
            provider=self.name,
            latency_ms=0.0,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=self.cost(prompt, completion),
            finish_reason=state.finish_reason,
            response_id=state.response_id,
            tokens_estimated=estimated,
        )

    def map_error(self, exc: BaseException) -> ProviderError:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return self.map_transport(exc, timeout=True)
        if isinstance(exc, openai.APIConnectionError):
            return self.map_transport(exc, timeout=False)
        if isinstance(exc, openai.APIStatusError):
            return self.map_status(exc.status_code, error_detail(exc), exc.response.headers)
        if isinstance(exc, openai.APIError):  # an error event inside a stream
            return self.malformed(exc)
        mapped = self.map_common(exc)
        if mapped is None:
            raise exc
        return mapped


class _StreamState:
    """What the events of one streamed answer add up to."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def add(self, event: Any) -> str:
        self.response_id = self.response_id or event.id
        self.model = event.model or self.model
        if event.usage is not None:
            self.prompt_tokens = event.usage.prompt_tokens
            self.completion_tokens = event.usage.completion_tokens
        if not event.choices:
            return ""
        choice = event.choices[0]
        if choice.finish_reason:
            self.finish_reason = choice.finish_reason
        text = (choice.delta.content if choice.delta else None) or ""
        if text:
            self.parts.append(text)
        return text
