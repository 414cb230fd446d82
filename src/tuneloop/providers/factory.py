"""Build a provider from a spec string, so configs and CLI options can name any model.

Specs (the same strings work in ``tuneloop.toml`` and in every CLI option):

- ``callable:module:function`` — a Python function (rules, oracles, the demo teacher)
- ``builtin:tiny``, ``local:PATH_OR_HUB_ID[+ADAPTER_DIR]`` — a transformers model
- ``registry:TASK@vN`` (or ``@latest``, ``@production``) — a registered model version
- ``openai:MODEL``, ``anthropic:MODEL``, ``together:MODEL``, ``openrouter:MODEL``
- ``openai-compatible:BASE_URL#MODEL`` — vLLM, Ollama, LM Studio, tuneloop's gateway
- ``provider:NAME`` — a ``[providers.NAME]`` table of the config
- ``chain:SPEC1,SPEC2,...`` — try each in order (a fallback chain)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from tuneloop.config import ProviderSettings
from tuneloop.providers.base import Provider
from tuneloop.providers.callable import CallableProvider
from tuneloop.providers.errors import ProviderError

if TYPE_CHECKING:
    from tuneloop.providers.shared_local import LocalModels
    from tuneloop.store import ModelVersion, Store

SPEC_HELP = (
    "callable:module:function, builtin:tiny, local:PATH_OR_HUB_ID[+ADAPTER_DIR], "
    "registry:TASK@vN, openai:MODEL, anthropic:MODEL, together:MODEL, openrouter:MODEL, "
    "openai-compatible:BASE_URL#MODEL, provider:NAME, chain:SPEC1,SPEC2,..."
)
REMOTE_KINDS = ("openai", "anthropic", "together", "openrouter", "openai-compatible")


def build_provider(
    spec: str,
    *,
    store: Store | None = None,
    device: str = "auto",
    providers: Mapping[str, ProviderSettings] | None = None,
    local: LocalModels | None = None,
) -> Provider:
    """``spec`` → provider. ``registry:`` specs need the store; ``provider:NAME`` needs the
    config's ``providers`` tables. With ``local``, local models are served by its shared,
    batching bases instead of a model of their own each."""
    kind, colon, rest = spec.strip().partition(":")
    if not colon and "/" in kind:  # a bare hub id or folder, as train.base_model holds them
        return _local(kind, None, device, kind, local)
    if kind == "builtin":
        return _local(spec, None, device, spec, local)
    if not rest:
        raise ProviderError(f"unknown provider spec {spec!r}; expected one of: {SPEC_HELP}")
    if kind == "callable":
        return CallableProvider(rest)
    if kind == "local":
        base, _, adapter = rest.partition("+")
        return _local(base, adapter or None, device, spec, local)
    if kind == "registry":
        if store is None:
            raise ProviderError(f"{spec!r} needs a store to resolve the model version")
        from tuneloop.registry import resolve_version

        task, _, version = rest.partition("@")
        return provider_for_version(
            resolve_version(store, task, version or "latest"), device=device, local=local
        )
    if kind == "provider":
        settings = (providers or {}).get(rest)
        if settings is None:
            known = ", ".join(sorted(providers or {})) or "none configured"
            raise ProviderError(
                f"no provider named {rest!r} in the config's [providers] tables (known: {known})"
            )
        return build_from_settings(
            rest, settings, store=store, device=device, providers=providers, local=local
        )
    if kind == "chain":
        members = [part.strip() for part in rest.split(",") if part.strip()]
        return build_from_settings(
            spec,
            ProviderSettings(kind="chain", members=members),
            store=store,
            device=device,
            providers=providers,
            local=local,
        )
    if kind in REMOTE_KINDS:
        model, base_url = rest, None
        if kind == "openai-compatible":
            base_url, hash_sign, model = rest.rpartition("#")
            if not hash_sign or not base_url or not model:
                raise ProviderError(f"{spec!r}: expected openai-compatible:BASE_URL#MODEL")
        settings = ProviderSettings.model_validate(
            {"kind": kind, "model": model, "base_url": base_url}
        )
        return build_from_settings(
            spec, settings, store=store, device=device, providers=providers, local=local
        )
    raise ProviderError(f"unknown provider spec {spec!r}; expected one of: {SPEC_HELP}")


def build_from_settings(
    name: str,
    settings: ProviderSettings,
    *,
    store: Store | None = None,
    device: str = "auto",
    providers: Mapping[str, ProviderSettings] | None = None,
    local: LocalModels | None = None,
) -> Provider:
    """A provider from a ``[providers.NAME]`` table (or the settings a spec string implies)."""
    provider: Provider
    if settings.kind == "chain":
        from tuneloop.providers.chain import BreakerSettings, FallbackChain
        from tuneloop.providers.output import OutputCheck

        if not settings.members:
            raise ProviderError(f"chain {name!r} has no members")
        if name in settings.members or f"provider:{name}" in settings.members:
            raise ProviderError(f"chain {name!r} lists itself as a member")
        breaker = settings.breaker
        return FallbackChain(
            [
                build_provider(member, store=store, device=device, providers=providers, local=local)
                for member in settings.members
            ],
            name=name,
            fallback_on=settings.fallback_on,
            breaker=BreakerSettings(breaker.failures, breaker.window_s, breaker.cooldown_s)
            if breaker is not None and breaker.enabled
            else None,
            timeout_s=settings.timeout_s if "timeout_s" in settings.model_fields_set else None,
            output=OutputCheck.from_config(settings.output) if settings.output else None,
        )
    elif settings.kind == "callable":
        provider = CallableProvider(settings.model, name=name)
    elif settings.kind == "local":
        base, _, adapter = settings.model.partition("+")
        provider = _local(base, adapter or None, device, name, local)
    else:
        from tuneloop.providers.remote import build_remote

        provider = build_remote(name, settings)
    if settings.output is not None:
        from tuneloop.providers.output import OutputCheck, checked

        provider = checked(provider, OutputCheck.from_config(settings.output))
    return provider


def provider_for_version(
    version: ModelVersion, *, device: str = "auto", local: LocalModels | None = None
) -> Provider:
    """A provider that serves a registered version: a local one in-process (base model + its
    adapter, or the whole fine-tuned model), a hosted one through its provider's API."""
    from tuneloop.hfmodels import is_adapter_dir

    name = f"registry:{version.task}@{version.name}"
    if version.backend in ("openai", "together") and version.remote_id:
        # served where it was trained: the base URL and key variable of its hosted job
        hosted = (version.config or {}).get("hosted") or {}
        return build_from_settings(
            name,
            ProviderSettings(
                kind=version.backend,
                model=version.remote_id,
                base_url=hosted.get("base_url") or None,
                api_key_env=hosted.get("api_key_env") or None,
            ),
        )
    if version.backend != "local" or not version.artifact_path:
        raise ProviderError(
            f"{version.task}@{version.name} was trained by {version.backend!r} and has no "
            "local weights or hosted model id to serve"
        )
    if is_adapter_dir(version.artifact_path):
        return _local(version.base_model, version.artifact_path, device, name, local)
    return _local(version.artifact_path, None, device, name, local)  # a fully fine-tuned model


def _local(
    base: str, adapter: str | None, device: str, name: str, local: LocalModels | None
) -> Provider:
    if local is not None:
        return local.provider(base, adapter, device=device, name=name)
    from tuneloop.providers.local import LocalModelProvider

    return LocalModelProvider(base, adapter, device=device, name=name)
