"""Build a provider from a spec string, so configs and CLI options can name any model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneloop.errors import ProviderError
from tuneloop.providers.base import Provider
from tuneloop.providers.callable import CallableProvider

if TYPE_CHECKING:
    from tuneloop.store import Store

SPEC_HELP = (
    "callable:module:function, local:PATH_OR_HUB_ID[+ADAPTER_DIR], builtin:tiny, "
    "or registry:TASK@vN"
)


def build_provider(spec: str, *, store: Store | None = None, device: str = "auto") -> Provider:
    """``spec`` → provider. ``registry:`` specs need the store to find the adapter and base."""
    kind, _, rest = spec.partition(":")
    if kind == "callable" and rest:
        return CallableProvider(rest)
    if kind == "builtin":
        from tuneloop.providers.local import LocalModelProvider

        return LocalModelProvider(spec, device=device, name=spec)
    if kind == "local" and rest:
        from tuneloop.providers.local import LocalModelProvider

        base, _, adapter = rest.partition("+")
        return LocalModelProvider(base, adapter or None, device=device, name=spec)
    if kind == "registry" and rest:
        if store is None:
            raise ProviderError(f"{spec!r} needs a store to resolve the model version")
        from tuneloop.registry import provider_for_version, resolve_version

        task, _, version = rest.partition("@")
        return provider_for_version(
            resolve_version(store, task, version or "latest"), device=device
        )
    raise ProviderError(f"unknown provider spec {spec!r}; expected one of: {SPEC_HELP}")
