"""Why a provider call failed, as types a caller can act on without reading messages.

::

    ProviderError                      (tuneloop.errors; every provider failure)
    ├── RetryableError                 trying again (or the next provider) may succeed
    │   ├── ProviderConnectionError    refused, reset, DNS: no answer at all
    │   ├── ProviderTimeout            the call's deadline or a stream's idle timeout passed
    │   ├── RateLimited                HTTP 429; ``retry_after`` seconds when the server said
    │   └── ProviderUnavailable        HTTP 5xx, 408/409, or a malformed response/stream
    ├── FinalError                     the same request will fail the same way again
    │   ├── AuthenticationError        HTTP 401/403 or a missing key; names the env variable
    │   ├── BadRequest                 HTTP 400/404/422: the request or the model id is wrong
    │   └── InvalidOutput              the answer is not JSON, fails the schema or a validator
    ├── StreamInterrupted              a stream failed after text was already delivered
    └── AllProvidersFailed             every member of a chain failed or was skipped (``trail``)

Retries and chains decide by type: ``RetryableError`` is retried with backoff until the
deadline; a chain falls through on the classes it is configured for. Messages name the
provider and the cause, never a key, a prompt or an answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneloop.errors import ProviderError

if TYPE_CHECKING:
    from tuneloop.providers.base import Attempt

__all__ = [
    "AllProvidersFailed",
    "AuthenticationError",
    "BadRequest",
    "FinalError",
    "InvalidOutput",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RetryableError",
    "StreamInterrupted",
    "error_kind",
]


class RetryableError(ProviderError):
    """A failure that may pass: the call can be retried or handed to the next provider."""


class ProviderConnectionError(RetryableError):
    """The provider could not be reached (connection refused or reset, name not resolved)."""


class ProviderTimeout(RetryableError):
    """No answer before the call's deadline, or a stream stalled past its idle timeout."""


class RateLimited(RetryableError):
    """HTTP 429. ``retry_after`` is the wait in seconds the server asked for, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailable(RetryableError):
    """A server-side failure: HTTP 5xx (or 408/409), or a response that could not be read."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FinalError(ProviderError):
    """A failure that repeats: retrying the same request is pointless."""


class AuthenticationError(FinalError):
    """The key is missing or was refused (401/403). ``env_var`` names where the key comes from."""

    def __init__(self, message: str, *, env_var: str | None = None) -> None:
        super().__init__(message)
        self.env_var = env_var


class BadRequest(FinalError):
    """The provider refused the request itself (400, 404 unknown model, 422)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InvalidOutput(FinalError):
    """The answer arrived but is unusable. ``reason``: ``not_json``, ``schema`` or ``validator``.

    ``completion`` is the answer that failed, for logging what the model did.
    """

    def __init__(self, message: str, *, reason: str, completion: object | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.completion = completion


class StreamInterrupted(ProviderError):
    """A stream broke after text had reached the caller, so no retry or fallback is possible."""


class AllProvidersFailed(ProviderError):
    """Every provider of a chain failed or was skipped; ``trail`` says what happened to each."""

    def __init__(self, message: str, *, trail: tuple[Attempt, ...]) -> None:
        super().__init__(message)
        self.trail = trail


ERROR_KINDS: dict[type[ProviderError], str] = {
    ProviderConnectionError: "connection",
    ProviderTimeout: "timeout",
    RateLimited: "rate_limited",
    ProviderUnavailable: "unavailable",
    AuthenticationError: "authentication",
    BadRequest: "bad_request",
    InvalidOutput: "invalid_output",
    StreamInterrupted: "stream_interrupted",
    AllProvidersFailed: "all_failed",
}


def error_kind(exc: BaseException) -> str:
    """The short name of an error's class (``timeout``, ``rate_limited``, …), for trails and
    for the ``fallback_on`` setting of a chain; ``error`` for anything else."""
    for cls in type(exc).__mro__:
        if cls in ERROR_KINDS:
            return ERROR_KINDS[cls]  # type: ignore[index]
    return "error"
