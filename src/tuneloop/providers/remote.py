"""What every HTTP provider shares: keys from the environment, error mapping, the retry loop.

The official clients (``openai``, ``anthropic``) do the HTTP, SSE parsing and typed responses;
they run with ``max_retries=0`` because ``retry.py`` owns retries under one deadline. A subclass
supplies four small methods: one call in one piece and one streamed call, sync and async.
Keys are read from the environment when the client is first needed, live only inside the
client, and are scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from tuneloop.config import ProviderSettings
from tuneloop.providers.base import (
    Attempt,
    BaseProvider,
    Completion,
    Message,
    RequestOptions,
    StreamChunk,
    estimate_prompt_tokens,
    estimate_tokens,
)
from tuneloop.providers.errors import (
    AuthenticationError,
    BadRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RetryableError,
    StreamInterrupted,
    error_kind,
)
from tuneloop.providers.prices import Price, price_for
from tuneloop.providers.retry import (
    Deadline,
    RetryPolicy,
    aretry_call,
    next_delay,
    retry_call,
    timed_out,
)

CONNECT_TIMEOUT_S = 10.0
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Kind:
    """Defaults of one API kind: where it lives and which variable holds its key."""

    base_url: str | None
    base_url_env: str | None
    key_env: str | None
    key_required: bool = True


KINDS: dict[str, Kind] = {
    "openai": Kind("https://api.openai.com/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "anthropic": Kind("https://api.anthropic.com", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    "together": Kind("https://api.together.xyz/v1", "TOGETHER_BASE_URL", "TOGETHER_API_KEY"),
    "openrouter": Kind("https://openrouter.ai/api/v1", "OPENROUTER_BASE_URL", "OPENROUTER_API_KEY"),
    "openai-compatible": Kind(None, None, None, key_required=False),
}


def key_env_of(settings: ProviderSettings) -> str | None:
    """The environment variable a provider's key comes from (None: the server needs none)."""
    kind = KINDS.get(settings.kind)
    return settings.api_key_env or (kind.key_env if kind else None)


class RemoteProvider(BaseProvider):
    """An HTTP API behind the provider interface; see the module docstring."""

    def __init__(
        self, name: str, settings: ProviderSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        kind = KINDS[settings.kind]
        self.name = name
        self.settings = settings
        self.kind = settings.kind
        self.model = settings.model
        self._environ = os.environ if environ is None else environ
        self.key_env = key_env_of(settings)
        self.key_required = kind.key_required or settings.api_key_env is not None
        base_url = (
            settings.base_url
            or (self._environ.get(kind.base_url_env) if kind.base_url_env else None)
            or kind.base_url
        )
        if not base_url:
            raise ProviderError(f"{name}: no base_url (openai-compatible:BASE_URL#MODEL)")
        self.base_url = base_url.rstrip("/")
        if not self.model:
            raise ProviderError(f"{name}: no model given")
        self.price: Price | None = (
            Price(settings.prices.input, settings.prices.output)
            if settings.prices
            else price_for(self.model)
        )
        self.policy = RetryPolicy(max_retries=settings.max_retries)
        self._rng = random.Random()
        self._client: Any = None
        self._async_clients: dict[int, Any] = {}

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} kind={self.kind} model={self.model} "
            f"base_url={self.base_url} key_env={self.key_env}>"
        )

    # -- keys and clients ------------------------------------------------------------------

    def _api_key(self) -> str:
        """The key from the environment; a missing required key names its variable."""
        value = self._environ.get(self.key_env, "") if self.key_env else ""
        if value:
            return value
        if self.key_required:
            raise AuthenticationError(
                f"{self.name}: environment variable {self.key_env} is not set "
                f"(it holds the {self.kind} API key)",
                env_var=self.key_env,
            )
        return "no-key"  # the clients insist on a value; keyless servers ignore it

    def key_is_set(self) -> bool:
        return bool(self.key_env and self._environ.get(self.key_env))

    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client(self._api_key(), asynchronous=False)
        return self._client

    def async_client(self) -> Any:
        """One async client per event loop: an httpx pool cannot move between loops."""
        loop = asyncio.get_running_loop()
        key = id(loop)
        client = self._async_clients.get(key)
        if client is None:
            for stale in [k for k in self._async_clients if k != key]:
                del self._async_clients[stale]
            client = self._make_client(self._api_key(), asynchronous=True)
            self._async_clients[key] = client
        return client

    def _make_client(self, api_key: str, *, asynchronous: bool) -> Any:
        raise NotImplementedError

    # -- what a subclass implements -------------------------------------------------------

    def _call(self, messages: list[Message], options: RequestOptions, timeout: Any) -> Completion:
        raise NotImplementedError

    async def _acall(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> Completion:
        raise NotImplementedError

    def _call_stream(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> Iterator[StreamChunk]:
        raise NotImplementedError

    def _acall_stream(
        self, messages: list[Message], options: RequestOptions, timeout: Any
    ) -> AsyncIterator[StreamChunk]:
        raise NotImplementedError

    def _timeout(self, deadline: Deadline, *, stream: bool) -> Any:
        raise NotImplementedError

    def map_error(self, exc: BaseException) -> ProviderError:
        raise NotImplementedError

    # -- the shared flow ------------------------------------------------------------------

    def _deadline(self, options: RequestOptions) -> Deadline:
        seconds = self.settings.timeout_s
        if options.timeout_s is not None:
            seconds = min(seconds, options.timeout_s)
        return Deadline(seconds)

    def _retry_recorder(self, retries: list[Attempt]) -> Callable[[RetryableError], None]:
        def record(error: RetryableError) -> None:
            retries.append(Attempt(self.name, "failed", error_kind(error), str(error)))

        return record

    def _finish(self, completion: Completion, retries: list[Attempt], started: float) -> Completion:
        latency_ms = (time.perf_counter() - started) * 1000
        trail = (*retries, Attempt(self.name, "ok", latency_ms=latency_ms)) if retries else ()
        return completion.replace(latency_ms=latency_ms, trail=trail)

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        deadline, started = self._deadline(options), time.perf_counter()
        retries: list[Attempt] = []

        def attempt() -> Completion:
            try:
                return self._call(messages, options, self._timeout(deadline, stream=False))
            except ProviderError:
                raise
            except Exception as exc:
                raise self.map_error(exc) from exc

        completion = retry_call(
            attempt,
            name=self.name,
            policy=self.policy,
            deadline=deadline,
            rng=self._rng,
            on_retry=self._retry_recorder(retries),
        )
        return self._finish(completion, retries, started)

    async def _acomplete(self, messages: list[Message], options: RequestOptions) -> Completion:
        deadline, started = self._deadline(options), time.perf_counter()
        retries: list[Attempt] = []

        async def attempt() -> Completion:
            try:
                return await self._acall(messages, options, self._timeout(deadline, stream=False))
            except ProviderError:
                raise
            except Exception as exc:
                raise self.map_error(exc) from exc

        completion = await aretry_call(
            attempt,
            name=self.name,
            policy=self.policy,
            deadline=deadline,
            rng=self._rng,
            on_retry=self._retry_recorder(retries),
        )
        return self._finish(completion, retries, started)

    def _interrupted(self, error: ProviderError) -> StreamInterrupted:
        return StreamInterrupted(
            f"{self.name}: the stream broke after text was delivered ({error_kind(error)}: {error})"
        )

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        """Retries are possible until the first text is out; after that a failure is final."""
        deadline, started = self._deadline(options), time.perf_counter()
        retries: list[Attempt] = []
        attempt = 0
        while True:
            if deadline.expired():
                raise timed_out(self.name, deadline)
            delivered = False
            try:
                chunks = self._call_stream(messages, options, self._timeout(deadline, stream=True))
                try:
                    while True:
                        try:
                            chunk = next(chunks)
                        except StopIteration:
                            break
                        except ProviderError:
                            raise
                        except Exception as exc:
                            raise self.map_error(exc) from exc
                        if chunk.completion is not None:
                            yield StreamChunk(
                                completion=self._finish(chunk.completion, retries, started)
                            )
                            return
                        if deadline.expired():
                            raise timed_out(self.name, deadline)
                        if chunk.text:
                            delivered = True
                            yield chunk
                finally:
                    chunks.close()  # type: ignore[attr-defined]
                raise ProviderUnavailable(f"{self.name}: the stream ended without a result")
            except ProviderError as error:
                if delivered:
                    raise self._interrupted(error) from error
                if not isinstance(error, RetryableError):
                    raise
                delay = next_delay(self.policy, attempt, error, deadline, self._rng)
                if delay is None:
                    raise
                self._retry_recorder(retries)(error)
                time.sleep(delay)
                attempt += 1

    async def _astream(
        self, messages: list[Message], options: RequestOptions
    ) -> AsyncIterator[StreamChunk]:
        deadline, started = self._deadline(options), time.perf_counter()
        retries: list[Attempt] = []
        attempt = 0
        while True:
            delivered = False
            try:
                chunks = self._acall_stream(messages, options, self._timeout(deadline, stream=True))
                try:
                    while True:
                        wait = deadline.cap(self.settings.idle_timeout_s)
                        try:
                            async with asyncio.timeout(wait):
                                chunk = await anext(chunks)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            raise (
                                timed_out(self.name, deadline)
                                if deadline.expired()
                                else self._idle(wait)
                            ) from None
                        except ProviderError:
                            raise
                        except Exception as exc:
                            raise self.map_error(exc) from exc
                        if chunk.completion is not None:
                            yield StreamChunk(
                                completion=self._finish(chunk.completion, retries, started)
                            )
                            return
                        if chunk.text:
                            delivered = True
                            yield chunk
                finally:
                    await chunks.aclose()  # type: ignore[attr-defined]
                raise ProviderUnavailable(f"{self.name}: the stream ended without a result")
            except ProviderError as error:
                if delivered:
                    raise self._interrupted(error) from error
                if not isinstance(error, RetryableError):
                    raise
                delay = next_delay(self.policy, attempt, error, deadline, self._rng)
                if delay is None:
                    raise
                self._retry_recorder(retries)(error)
                await asyncio.sleep(delay)
                attempt += 1

    def _idle(self, seconds: float) -> ProviderTimeout:
        return ProviderTimeout(f"{self.name}: the stream sent nothing for {seconds:g} s")

    # -- helpers for subclasses -----------------------------------------------------------

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        return (
            None if self.price is None else round(self.price.cost(input_tokens, output_tokens), 8)
        )

    def usage(
        self,
        messages: list[Message],
        text: str,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> tuple[int, int, bool]:
        """(input, output, estimated): the provider's counts, else estimates from the text."""
        if input_tokens is not None and output_tokens is not None:
            return input_tokens, output_tokens, False
        return (
            input_tokens if input_tokens is not None else estimate_prompt_tokens(messages),
            output_tokens if output_tokens is not None else estimate_tokens(text),
            True,
        )

    def body(self, options: RequestOptions) -> dict[str, Any]:
        """The configured body parameters with this call's ``extra_body`` on top."""
        return {**self.settings.body, **(options.extra_body or {})}

    def call_headers(self, options: RequestOptions) -> dict[str, str] | None:
        """Headers of this one call (the idempotency key), on top of the configured ones."""
        if options.idempotency_key is None:
            return None
        return {IDEMPOTENCY_HEADER: options.idempotency_key}

    def redact(self, text: str) -> str:
        """One line, short, with the key (if it appears at all) replaced by ``***``."""
        key = self._environ.get(self.key_env, "") if self.key_env else ""
        if key:
            text = text.replace(key, "***")
        line = " ".join(text.split())
        return line if len(line) <= MAX_DETAIL_CHARS else line[:MAX_DETAIL_CHARS] + "…"

    def map_status(self, status: int, detail: str, headers: Mapping[str, str]) -> ProviderError:
        """An HTTP error status as the error class callers act on."""
        where = f"{self.name}: HTTP {status}"
        detail = self.redact(detail)
        if status in (401, 403):
            # The server's own words are left out: some echo part of the key back.
            variable = self.key_env or "api_key_env (not configured)"
            return AuthenticationError(
                f"{where}: the key in {variable} was refused", env_var=self.key_env
            )
        if status == 429:
            return RateLimited(
                f"{where}: rate limited ({detail})", retry_after=parse_retry_after(headers)
            )
        if status == 408:
            return ProviderTimeout(f"{where}: the server timed out ({detail})")
        if status == 409 or status >= 500:
            return ProviderUnavailable(f"{where}: {detail}", status=status)
        return BadRequest(f"{where}: {detail}", status=status)

    def map_common(self, exc: BaseException) -> ProviderError | None:
        """Errors that look the same whatever the client: raw transport errors, bad data."""
        timeouts, transports = transport_errors()
        if isinstance(exc, timeouts):
            return self.map_transport(exc, timeout=True)
        if isinstance(exc, transports):
            return self.map_transport(exc, timeout=False)
        if isinstance(exc, ValueError | KeyError | AttributeError):
            return self.malformed(exc)  # bad JSON in an event, an unexpected shape
        return None

    def map_transport(self, exc: BaseException, *, timeout: bool) -> ProviderError:
        if timeout:
            return ProviderTimeout(f"{self.name}: no answer in time from {self.base_url}")
        cause = exc.__cause__ or exc
        return ProviderConnectionError(
            f"{self.name}: cannot reach {self.base_url} ({type(cause).__name__})"
        )

    def malformed(self, exc: BaseException) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"{self.name}: malformed response ({type(exc).__name__}: {self.redact(str(exc))})"
        )


def transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeout classes, other transport classes) of the HTTP libraries under the clients.

    The clients wrap transport errors of the request itself, but an error while a streamed body
    is being read can reach us raw.
    """
    timeouts: list[type[BaseException]] = []
    transports: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transports.append(module.TransportError)
    return tuple(timeouts), tuple(transports)


IDEMPOTENCY_HEADER = "Idempotency-Key"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_detail(exc: Any) -> str:
    """The server's own message from an API error body (OpenAI and Anthropic shapes)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return str(getattr(exc, "message", "") or type(exc).__name__)


def build_remote(name: str, settings: ProviderSettings) -> RemoteProvider:
    if settings.kind == "anthropic":
        from tuneloop.providers.anthropic_messages import AnthropicProvider

        return AnthropicProvider(name, settings)
    from tuneloop.providers.openai_chat import OpenAIChatProvider

    return OpenAIChatProvider(name, settings)
