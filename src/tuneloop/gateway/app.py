"""``create_app(config)``: the FastAPI app of the OpenAI-compatible gateway.

Endpoints: ``POST /v1/chat/completions`` (plain and SSE streaming), ``GET /v1/models``,
``POST /v1/feedback``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``. The HTTP layer here
only parses, authenticates and shapes responses; :class:`~tuneloop.gateway.service.Gateway`
decides who answers and logs the call.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from tuneloop.config import Config
from tuneloop.gateway.errors import APIError, install_handlers
from tuneloop.gateway.service import Answer, CallContext, Gateway
from tuneloop.gateway.types import (
    ChatCompletionRequest,
    FeedbackRequest,
    chunk_body,
    completion_body,
    model_entry,
    usage_body,
)
from tuneloop.store import Store

STREAM_PIECE = 24  # characters per content chunk of a streamed answer
ModelT = TypeVar("ModelT", bound=BaseModel)


def create_app(config: Config, *, store: Store | None = None) -> FastAPI:
    """A gateway app on ``config``'s store (or ``store``); start-up loads routes and keys."""
    gateway = Gateway(config, store=store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(
        title="tuneloop gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.gateway = gateway
    install_handlers(app)
    limit = config.gateway.max_request_bytes

    async def read_json_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise APIError(
                413,
                f"request body is {declared} bytes; at most {limit} accepted",
                code="request_too_large",
            )
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > limit:
                raise APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")
        return bytes(body)

    def parse(model: type[ModelT], body: bytes) -> ModelT:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors()
            if not errors:
                raise APIError(400, "invalid request body", code="invalid_request") from None
            first = errors[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            if first["type"] == "json_invalid":
                raise APIError(400, "request body is not valid JSON", code="invalid_json") from None
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            where = f"{param}: " if param else ""
            raise APIError(
                400,
                f"{where}{first['msg']}{more}",
                code="invalid_request",
                param=param,
            ) from None

    def headers_of(request: Request) -> dict[str, str]:
        return {
            name: request.headers[name]
            for name in ("x-tuneloop-task", "x-tuneloop-tenant", "x-tuneloop-session")
            if request.headers.get(name)
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        scope = gateway.authenticate(request.headers.get("authorization"))
        body = parse(ChatCompletionRequest, await read_json_body(request))
        context = gateway.context(body, headers_of(request), scope)
        if body.stream and config.gateway.stream_checks == "after":
            live = await gateway.open_stream(body, context)
            return StreamingResponse(
                gateway.stream_events(body, context, live),
                media_type="text/event-stream",
                headers=route_headers(context, live.target.name, live.route, live.trail),
            )
        answer = await gateway.answer(body, context)
        gateway.finish(body, context, answer)
        headers = route_headers(context, answer.target.name, answer.route, answer.trail)
        usage = usage_body(answer.completion.prompt_tokens, answer.completion.completion_tokens)
        response_id = f"chatcmpl-{context.call_id}"
        if body.stream:
            return StreamingResponse(
                stream_events(response_id, answer, usage, body.wants_usage_chunk),
                media_type="text/event-stream",
                headers=headers,
            )
        payload = completion_body(response_id, answer.target.name, answer.text, usage)
        return Response(
            json.dumps(payload, ensure_ascii=False), media_type="application/json", headers=headers
        )

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        scope = gateway.authenticate(request.headers.get("authorization"))
        created = int(time.time())
        entries = [
            model_entry(task, "tuneloop", created)
            for task in sorted(gateway.routes)
            if scope is None or scope.allows_task(task)
        ]
        entries += [
            model_entry(target.name, "tuneloop-fallback", created) for target in gateway.fallbacks
        ]
        return JSONResponse({"object": "list", "data": entries})

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> JSONResponse:
        scope = gateway.authenticate(request.headers.get("authorization"))
        body = parse(FeedbackRequest, await read_json_body(request))
        reward = await gateway.feedback(
            body.id,
            scope,
            request.headers.get("x-tuneloop-tenant"),
            body.kind,
            score=body.score,
            edited=body.edited,
            comment=body.comment,
            value=body.value,
        )
        return JSONResponse({"id": body.id, "kind": body.kind, "reward": reward})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = []
        if not gateway.ready:
            problems.append(gateway.problem or "routes not loaded")
        if not gateway.calllog.store_ok:
            problems.append("store unavailable: calls are kept in the spill file")
        status = 200 if not problems else 503
        return JSONResponse(
            {
                "status": "ready" if status == 200 else "not ready",
                "problems": problems,
                "tasks": sorted(gateway.routes),
            },
            status_code=status,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        gateway.metrics.log_queue.set(gateway.calllog.depth)
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def route_headers(
    context: CallContext, model: str, route: str, trail: list[dict[str, str]]
) -> dict[str, str]:
    """Who answered, by which route, after which failures."""
    headers = {
        "X-Tuneloop-Call-Id": context.call_id,
        "X-Tuneloop-Model": model,
        "X-Tuneloop-Route": route,
    }
    if trail:
        reason = ",".join(f"{step['model']}:{step['reason']}" for step in trail)
        headers["X-Tuneloop-Fallback-Reason"] = reason[:500]
    return headers


def stream_events(
    response_id: str, answer: Answer, usage: dict[str, int], include_usage: bool
) -> Iterator[str]:
    """A whole, checked answer as OpenAI's SSE chunks (``gateway.stream_checks = "before"``):
    role, content pieces, finish, optional usage, DONE."""
    created, model = int(time.time()), answer.target.name

    def event(body: dict[str, object]) -> str:
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield event(
        chunk_body(
            response_id,
            model,
            created,
            {"role": "assistant", "content": ""},
            with_usage_field=include_usage,
        )
    )
    text = answer.text
    for start in range(0, len(text), STREAM_PIECE):
        yield event(
            chunk_body(
                response_id,
                model,
                created,
                {"content": text[start : start + STREAM_PIECE]},
                with_usage_field=include_usage,
            )
        )
    yield event(
        chunk_body(
            response_id, model, created, {}, finish_reason="stop", with_usage_field=include_usage
        )
    )
    if include_usage:
        yield event(chunk_body(response_id, model, created, None, usage=usage))
    yield "data: [DONE]\n\n"
