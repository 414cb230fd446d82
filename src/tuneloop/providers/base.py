"""The one interface for "something that answers messages", and the answer it gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]


@dataclass(frozen=True)
class Completion:
    """A provider's answer with what it cost: tokens and wall time."""

    text: str
    model: str
    provider: str
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if not self.completion_tokens or self.latency_ms <= 0:
            return None
        return self.completion_tokens / (self.latency_ms / 1000)


@runtime_checkable
class Provider(Protocol):
    """Answers a list of chat messages. Implementations raise ProviderError on failure."""

    name: str

    def complete(
        self, messages: list[Message], *, max_tokens: int | None = None, temperature: float = 0.0
    ) -> Completion: ...
