"""Model clients behind one interface, and ``build_provider`` to make one from a spec string.

Specs: ``callable:module:function``, ``builtin:tiny``, ``local:PATH_OR_ID[+ADAPTER_DIR]``,
``registry:TASK@vN``, ``openai:MODEL``, ``anthropic:MODEL``, ``together:MODEL``,
``openrouter:MODEL``, ``openai-compatible:BASE_URL#MODEL``, ``provider:NAME`` (a
``[providers.NAME]`` config table) and ``chain:SPEC1,SPEC2,...``. Errors: see
``tuneloop.providers.errors`` (retryable vs final).
"""

from tuneloop.providers.base import (
    Attempt,
    BaseProvider,
    Completion,
    Message,
    Provider,
    RequestOptions,
    StreamChunk,
)
from tuneloop.providers.callable import CallableProvider
from tuneloop.providers.chain import BreakerSettings, CircuitBreaker, FallbackChain
from tuneloop.providers.errors import (
    AllProvidersFailed,
    AuthenticationError,
    BadRequest,
    FinalError,
    InvalidOutput,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RetryableError,
    StreamInterrupted,
    error_kind,
)
from tuneloop.providers.factory import (
    SPEC_HELP,
    build_from_settings,
    build_provider,
    provider_for_version,
)
from tuneloop.providers.output import CheckedProvider, OutputCheck, checked, json_check
from tuneloop.providers.prices import PRICES, Price, price_for
from tuneloop.providers.remote import KINDS, key_env_of
from tuneloop.providers.shared_local import LocalModels, SharedLocalProvider

__all__ = [
    "KINDS",
    "PRICES",
    "SPEC_HELP",
    "AllProvidersFailed",
    "Attempt",
    "AuthenticationError",
    "BadRequest",
    "BaseProvider",
    "BreakerSettings",
    "CallableProvider",
    "CheckedProvider",
    "CircuitBreaker",
    "Completion",
    "FallbackChain",
    "FinalError",
    "InvalidOutput",
    "LocalModels",
    "Message",
    "OutputCheck",
    "Price",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RequestOptions",
    "RetryableError",
    "SharedLocalProvider",
    "StreamChunk",
    "StreamInterrupted",
    "build_from_settings",
    "build_provider",
    "checked",
    "error_kind",
    "json_check",
    "key_env_of",
    "price_for",
    "provider_for_version",
]
