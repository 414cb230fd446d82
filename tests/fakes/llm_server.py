"""Fake LLM APIs on loopback, speaking the real wire formats, for the official clients.

One uvicorn server (in a thread) hosts three fakes under their own prefixes:

- ``/openai/v1/chat/completions``   — OpenAI chat completions, JSON and SSE streaming
- ``/together/v1/chat/completions`` — Together's OpenAI-compatible API (same format)
- ``/anthropic/v1/messages``        — Anthropic messages, JSON and its event stream
- OpenAI's and Together's fine-tuning APIs beside their chat (``finetune.py``), so a model
  trained on a fake is served by the same fake

Each fake answers from a script of ``Reply`` objects (then its ``default`` reply) and logs every
request. A reply can script a fault: an HTTP error with the provider's own error body (5xx,
401, 429 with ``Retry-After``…), a delay before answering (a hang past the client's timeout), a
stall in the middle of a stream, or a malformed SSE event. Invalid-JSON and schema failures are
just replies whose ``text`` is not the JSON the caller wants.

With ``idempotent`` set, the OpenAI-format fakes honour ``Idempotency-Key`` as a gateway or
proxy with an idempotency cache does: a request under a key they have answered gets that same
answer back at no cost (logged in ``replayed``, not in ``requests``), even when the first
caller never read it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from fakes.finetune import FakeFineTuning, add_openai_routes, add_together_routes

DEFAULT_TEXT = "Hello from the fake model."


@dataclass
class Reply:
    """One scripted answer (or failure) of a fake API."""

    text: str = DEFAULT_TEXT
    status: int = 200
    error_message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering at all
    stall_after: int | None = None  # streams: stop sending after this many text events …
    stall_s: float = 0.0  # … for this long
    malformed_at: int | None = None  # streams: an event that is not JSON, before text N
    usage: tuple[int, int] | None = (12, 7)  # (input, output) tokens; None: no usage reported
    finish_reason: str = "stop"  # OpenAI vocabulary; the Anthropic fake translates it
    chunk_chars: int = 5  # streams: characters per text event
    model: str | None = None  # default: the model the request named
    # streams: before text ``gate_after``, wait (at most ``gate_timeout_s``) until the test sets
    # ``gate``; ``events`` (the test's list) records what the fake did, in order, so a test can
    # prove which side moved first without timing anything
    gate: threading.Event | None = None
    gate_after: int = 1
    gate_timeout_s: float = 10.0
    events: list[str] | None = None

    @classmethod
    def error(
        cls, status: int, message: str = "scripted failure", retry_after: float | None = None
    ) -> Reply:
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        return cls(status=status, error_message=message, headers=headers)

    @classmethod
    def hang(cls, seconds: float, text: str = DEFAULT_TEXT) -> Reply:
        return cls(text=text, delay_s=seconds)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeAPI:
    """The script, the request log and the expected key of one fake provider."""

    def __init__(self, kind: str, prefix: str, base_url: str) -> None:
        self.kind = kind
        self.prefix = prefix
        self.base_url = base_url
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[RecordedRequest] = []
        self.expected_key: str | None = None
        self.idempotent = False
        self.replayed: list[str] = []  # idempotency keys answered from the first answer
        self._answers: dict[str, dict[str, Any]] = {}
        self.tuning = FakeFineTuning(kind)  # files and jobs of its fine-tuning API

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order; then ``default`` answers."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.default = Reply()
            self.expected_key = None
            self.idempotent = False
            self.replayed.clear()
            self._answers.clear()
        self.tuning.reset()

    def replay(self, key: str | None) -> dict[str, Any] | None:
        """The answer first given under ``key`` (an idempotent fake only), logged as replayed."""
        with self._lock:
            if not self.idempotent or key is None or key not in self._answers:
                return None
            self.replayed.append(key)
            return self._answers[key]

    def remember(self, key: str | None, body: dict[str, Any]) -> None:
        if self.idempotent and key is not None:
            with self._lock:
                self._answers.setdefault(key, body)

    def take(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else self.default


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def _note(reply: Reply, event: str) -> None:
    if reply.events is not None:
        reply.events.append(event)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# -- OpenAI chat completions ---------------------------------------------------------------


def _openai_error(reply: Reply) -> dict[str, Any]:
    kinds = {
        400: "invalid_request_error",
        401: "invalid_api_key",
        403: "permission_denied",
        404: "not_found",
        429: "rate_limit_exceeded",
    }
    return {
        "error": {
            "message": reply.error_message,
            "type": kinds.get(reply.status, "server_error"),
            "param": None,
            "code": kinds.get(reply.status),
        }
    }


def _openai_usage(reply: Reply) -> dict[str, int] | None:
    if reply.usage is None:
        return None
    return {
        "prompt_tokens": reply.usage[0],
        "completion_tokens": reply.usage[1],
        "total_tokens": sum(reply.usage),
    }


def _openai_body(reply: Reply, model: str, number: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": reply.finish_reason,
                "message": {"role": "assistant", "content": reply.text},
            }
        ],
    }
    usage = _openai_usage(reply)
    if usage is not None:
        body["usage"] = usage
    return body


async def _openai_events(
    reply: Reply, model: str, number: int, include_usage: bool
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield _sse(chunk({"role": "assistant", "content": ""}, None))
    for index, piece in enumerate(_pieces(reply.text, reply.chunk_chars)):
        if reply.stall_after is not None and index == reply.stall_after:
            await asyncio.sleep(reply.stall_s)
        if reply.gate is not None and index == reply.gate_after:
            released = await asyncio.to_thread(reply.gate.wait, reply.gate_timeout_s)
            _note(reply, "upstream released" if released else "upstream gave up waiting")
        if reply.malformed_at == index:
            yield b'data: {"id": "broken", "choices": [\n\n'
        yield _sse(chunk({"content": piece}, None))
    _note(reply, "upstream finished")
    yield _sse(chunk({}, reply.finish_reason))
    usage = _openai_usage(reply)
    if include_usage and usage is not None:
        yield _sse(
            {
                "id": f"chatcmpl-fake-{number}",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    yield _sse("[DONE]")


# -- Anthropic messages ----------------------------------------------------------------------

ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def _anthropic_error(reply: Reply) -> dict[str, Any]:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
    return {
        "type": "error",
        "error": {"type": kinds.get(reply.status, "api_error"), "message": reply.error_message},
    }


def _anthropic_body(reply: Reply, model: str, number: int) -> dict[str, Any]:
    usage = reply.usage or (0, 0)
    return {
        "id": f"msg_fake_{number}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": ANTHROPIC_STOP.get(reply.finish_reason, reply.finish_reason),
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


async def _anthropic_events(reply: Reply, model: str, number: int) -> AsyncIterator[bytes]:
    usage = reply.usage or (0, 0)
    yield _sse(
        {
            "type": "message_start",
            "message": {
                "id": f"msg_fake_{number}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": usage[0], "output_tokens": 1},
            },
        },
        "message_start",
    )
    yield _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    yield _sse({"type": "ping"}, "ping")
    for index, piece in enumerate(_pieces(reply.text, reply.chunk_chars)):
        if reply.stall_after is not None and index == reply.stall_after:
            await asyncio.sleep(reply.stall_s)
        if reply.malformed_at == index:
            yield b'event: content_block_delta\ndata: {"type": "content_block_delta", \n\n'
        yield _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            "content_block_delta",
        )
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": ANTHROPIC_STOP.get(reply.finish_reason, reply.finish_reason),
                "stop_sequence": None,
            },
            "usage": {"output_tokens": usage[1]},
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")


# -- the server ------------------------------------------------------------------------------


class FakeLLMServer:
    """The three fakes on one loopback port; ``start()`` returns once it accepts requests."""

    def __init__(self) -> None:
        self.port = 0  # chosen by the OS when the server starts
        self.openai = FakeAPI("openai", "/openai", "")
        self.together = FakeAPI("together", "/together", "")
        self.anthropic = FakeAPI("anthropic", "/anthropic", "")
        self._counter = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _next_number(self) -> int:
        self._counter += 1
        return self._counter

    def app(self) -> Any:
        app = FastAPI()

        async def recorded(api: FakeAPI, request: Request) -> tuple[RecordedRequest, Reply]:
            body = await request.json()
            record = RecordedRequest(
                request.url.path, {k.lower(): v for k, v in request.headers.items()}, body
            )
            return record, api.take(record)

        def refused(api: FakeAPI, record: RecordedRequest) -> Reply | None:
            if api.expected_key is None:
                return None
            given = record.headers.get("authorization", "").removeprefix("Bearer ")
            if api.kind == "anthropic":  # Anthropic's clients use either header
                given = record.headers.get("x-api-key") or given
            if given == api.expected_key:
                return None
            return Reply.error(
                401,
                "invalid x-api-key" if api.kind == "anthropic" else "Incorrect API key provided.",
            )

        def openai_route(api: FakeAPI) -> None:
            @app.post(f"{api.prefix}/v1/chat/completions")
            async def chat(request: Request) -> Response:
                key = request.headers.get("idempotency-key")
                known = api.replay(key)
                if known is not None:
                    return JSONResponse(known)
                record, reply = await recorded(api, request)
                reply = refused(api, record) or reply
                number = self._next_number() if reply.status == 200 else 0
                if reply.status == 200 and not record.body.get("stream"):
                    # Made (and billed) now: kept even if the caller is gone when it is sent.
                    model = reply.model or record.body.get("model", "fake")
                    api.remember(key, _openai_body(reply, model, number))
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                if reply.status != 200:
                    return JSONResponse(
                        _openai_error(reply), status_code=reply.status, headers=reply.headers
                    )
                model = reply.model or record.body.get("model", "fake")
                if record.body.get("stream"):
                    include = bool((record.body.get("stream_options") or {}).get("include_usage"))
                    return StreamingResponse(
                        _openai_events(reply, model, number, include),
                        media_type="text/event-stream",
                        headers=reply.headers,
                    )
                return JSONResponse(_openai_body(reply, model, number), headers=reply.headers)

        openai_route(self.openai)
        openai_route(self.together)
        add_openai_routes(app, self.openai.prefix, self.openai.tuning)
        add_together_routes(app, self.together.prefix, self.together.tuning)

        @app.post(f"{self.anthropic.prefix}/v1/messages")
        async def messages(request: Request) -> Response:
            api = self.anthropic
            record, reply = await recorded(api, request)
            reply = refused(api, record) or reply
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.status != 200:
                return JSONResponse(
                    _anthropic_error(reply), status_code=reply.status, headers=reply.headers
                )
            model = reply.model or record.body.get("model", "fake")
            number = self._next_number()
            if record.body.get("stream"):
                return StreamingResponse(
                    _anthropic_events(reply, model, number),
                    media_type="text/event-stream",
                    headers=reply.headers,
                )
            return JSONResponse(_anthropic_body(reply, model, number), headers=reply.headers)

        return app

    def start(self) -> FakeLLMServer:
        import uvicorn

        # uvicorn binds the port itself: a socket handed in through ``sockets=`` loses
        # TCP_NODELAY, which adds ~40 ms (Nagle + delayed ACK) to every response.
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="fake-llm-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake LLM server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        root = f"http://127.0.0.1:{self.port}"
        self.openai.base_url = f"{root}/openai/v1"
        self.together.base_url = f"{root}/together/v1"
        self.anthropic.base_url = f"{root}/anthropic"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        for api in (self.openai, self.together, self.anthropic):
            api.reset()
