"""A Python function as a provider: rules, oracles, programmatic teachers and tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from tuneloop.imports import import_object
from tuneloop.providers.base import (
    BaseProvider,
    Completion,
    Message,
    RequestOptions,
    StreamChunk,
)
from tuneloop.providers.errors import ProviderError

ResponseFunction = Callable[[list[Message]], Any]


class CallableProvider(BaseProvider):
    """Calls ``function(messages)``; it returns the text, or a dict with ``text`` and usage.

    A function that raises a ``ProviderError`` subclass (``ProviderUnavailable``,
    ``InvalidOutput``…) is passed through unchanged, so tests and chains can script failures;
    any other exception becomes a plain ``ProviderError``. A generator function (one that
    yields text pieces) streams them as they come; answered in one piece, they are joined.
    """

    def __init__(self, function: ResponseFunction | str, *, name: str | None = None) -> None:
        if isinstance(function, str):
            name = name or f"callable:{function}"
            function = import_object(function, error=ProviderError)
        if not callable(function):
            raise ProviderError(f"{name or function!r} is not callable")
        self._function = function
        self.name = name or f"callable:{getattr(function, '__qualname__', 'function')}"

    def _call(self, messages: list[Message]) -> Any:
        try:
            return self._function(messages)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"{self.name} raised {type(exc).__name__}: {exc}") from exc

    def _pieces(self, answer: Iterator[Any]) -> Iterator[str]:
        try:
            for piece in answer:
                yield str(piece)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"{self.name} raised {type(exc).__name__}: {exc}") from exc

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        started = time.perf_counter()
        answer = self._call(messages)
        if isinstance(answer, Iterator):
            answer = "".join(self._pieces(answer))
        return self._completion(answer, started)

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        started = time.perf_counter()
        answer = self._call(messages)
        if not isinstance(answer, Iterator):
            completion = self._completion(answer, started)
            if completion.text:
                yield StreamChunk(text=completion.text)
            yield StreamChunk(completion=completion)
            return
        parts = []
        for piece in self._pieces(answer):
            if piece:
                parts.append(piece)
                yield StreamChunk(text=piece)
        yield StreamChunk(completion=self._completion("".join(parts), started))

    def _completion(self, answer: Any, started: float) -> Completion:
        latency_ms = (time.perf_counter() - started) * 1000
        if not isinstance(answer, dict):
            answer = {"text": answer}
        text = str(answer.get("text", ""))
        prompt_tokens = answer.get("prompt_tokens")
        completion_tokens = answer.get("completion_tokens")
        return Completion(
            text=text,
            model=str(answer.get("model", self.name)),
            provider=self.name,
            latency_ms=float(answer.get("latency_ms", latency_ms)),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=answer.get("cost_usd"),
            finish_reason=answer.get("finish_reason", "stop"),
            response_id=answer.get("response_id"),
        )
