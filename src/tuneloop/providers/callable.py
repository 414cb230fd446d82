"""A Python function as a provider: rules, oracles, programmatic teachers and tests."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from tuneloop.errors import ProviderError
from tuneloop.providers.base import Completion, Message

ResponseFunction = Callable[[list[Message]], Any]


def import_object(spec: str) -> Any:
    """Import ``module:attribute`` with a message that says which part is missing."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ProviderError(f"{spec!r} is not of the form module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProviderError(f"cannot import module {module_name!r} of {spec!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ProviderError(f"module {module_name!r} has no attribute {attribute!r}") from None


class CallableProvider:
    """Calls ``function(messages)``; it returns the text, or a dict with ``text`` and usage."""

    def __init__(self, function: ResponseFunction | str, *, name: str | None = None) -> None:
        if isinstance(function, str):
            name = name or f"callable:{function}"
            function = import_object(function)
        if not callable(function):
            raise ProviderError(f"{name or function!r} is not callable")
        self._function = function
        self.name = name or f"callable:{getattr(function, '__qualname__', 'function')}"

    def complete(
        self, messages: list[Message], *, max_tokens: int | None = None, temperature: float = 0.0
    ) -> Completion:
        started = time.perf_counter()
        try:
            answer = self._function(messages)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"{self.name} raised {type(exc).__name__}: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if isinstance(answer, dict):
            return Completion(
                text=str(answer.get("text", "")),
                model=str(answer.get("model", self.name)),
                provider=self.name,
                latency_ms=float(answer.get("latency_ms", latency_ms)),
                prompt_tokens=answer.get("prompt_tokens"),
                completion_tokens=answer.get("completion_tokens"),
                cost_usd=answer.get("cost_usd"),
            )
        return Completion(
            text=str(answer), model=self.name, provider=self.name, latency_ms=latency_ms
        )
