"""The one place the gateway calls providers: builds them by spec, calls them with a deadline.

Everything else in the gateway sees :class:`Upstream` only, so moving to the providers' async and
streaming methods changes this module alone.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tuneloop.providers import Completion, Message, Provider, build_provider
from tuneloop.store import Store

THREADS = 64  # concurrent blocking provider calls


class Upstream:
    """Providers by spec, built once and shared by every request."""

    def __init__(self, store: Store | None, *, timeout_s: float, device: str = "auto") -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.device = device
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="tuneloop-upstream")

    def provider(self, spec: str) -> Provider:
        """The provider of a spec (a ``ProviderError`` naming the spec when it cannot be built)."""
        found = self._providers.get(spec)
        if found is not None:
            return found
        with self._lock:
            if spec not in self._providers:
                self._providers[spec] = build_provider(spec, store=self.store, device=self.device)
            return self._providers[spec]

    async def complete(
        self,
        spec: str,
        messages: list[Message],
        *,
        max_tokens: int | None,
        temperature: float | None,
        options: dict[str, Any],
    ) -> Completion:
        """One answer within ``timeout_s`` (TimeoutError otherwise). ``options`` holds request
        parameters (tools, response_format, …) for providers that take them."""
        loop = asyncio.get_running_loop()
        provider = await loop.run_in_executor(self._pool, self.provider, spec)
        call = loop.run_in_executor(
            self._pool,
            lambda: provider.complete(
                messages, max_tokens=max_tokens, temperature=temperature or 0.0
            ),
        )
        return await asyncio.wait_for(call, self.timeout_s)

    def forget(self, keep: set[str]) -> None:
        """Drop providers of specs no longer routed (a replaced version's model)."""
        with self._lock:
            for spec in [spec for spec in self._providers if spec not in keep]:
                del self._providers[spec]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
