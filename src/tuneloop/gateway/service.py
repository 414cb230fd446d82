"""The gateway's state and its answer to one call: route, try providers in order, log.

One :class:`Gateway` per app (``create_app`` makes it); it owns the store connection, the
providers and fallback chains, the routes read from the registry, the API key scopes, the call
log and the shadow workers. Nothing here is module-global, so several apps live side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from tuneloop.capture.client import Tuneloop
from tuneloop.config import Config
from tuneloop.errors import InputError, ProviderError, StoreError, TuneloopError
from tuneloop.gateway.calllog import CallLog
from tuneloop.gateway.errors import APIError
from tuneloop.gateway.keys import KeyScope, find_scope, load_scopes
from tuneloop.gateway.metrics import GatewayMetrics
from tuneloop.gateway.routing import (
    StageRow,
    Target,
    TaskRoutes,
    output_check,
    pick_route,
    plan,
    request_schema,
    routes_from_stages,
)
from tuneloop.gateway.types import ChatCompletionRequest, chunk_body, usage_body
from tuneloop.gateway.upstream import Checked, Upstream
from tuneloop.imports import import_object
from tuneloop.providers import (
    AllProvidersFailed,
    Attempt,
    BreakerSettings,
    Completion,
    InvalidOutput,
    LocalModels,
    OutputCheck,
    RequestOptions,
    StreamChunk,
    StreamInterrupted,
    error_kind,
)
from tuneloop.store import Interaction, ModelVersion, OptOut, Store

log = logging.getLogger("tuneloop.gateway")

ROUTED_STAGES = ("production", "canary", "shadow")
BLOCKING_THREADS = 64


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class CallContext:
    """Who is calling about what, from headers, metadata and the API key."""

    call_id: str
    task: str
    tenant: str | None
    session_id: str | None
    sticky_key: str
    direct: Target | None  # a provider spec named by the request's model
    metadata: dict[str, Any]
    scope: KeyScope | None
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Answer:
    """What a call got: the text, who answered, by which route, after which failures."""

    text: str
    completion: Completion
    target: Target
    route: str
    trail: list[dict[str, str]]


@dataclass
class LiveStream:
    """A streamed answer whose first piece has arrived: who answers, by which route, after
    which failures, and the rest of the chain's stream."""

    chunks: AsyncIterator[StreamChunk]
    first: StreamChunk
    target: Target
    route: str
    trail: list[dict[str, str]]
    first_token_s: float


def failures(trail: tuple[Attempt, ...]) -> list[dict[str, str]]:
    """The providers passed over, as the log and the fallback header show them."""
    return [
        {"model": a.provider, "reason": a.error or a.outcome, "detail": a.detail or ""}
        for a in trail
        if a.outcome != "ok"
    ]


def sse(body: dict[str, Any]) -> str:
    """One server-sent event carrying a JSON body."""
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


@dataclass
class ShadowJob:
    context: CallContext
    target: Target
    messages: list[dict[str, Any]]
    options: RequestOptions


class Gateway:
    """Routing, fallback, logging and metrics of one gateway app."""

    def __init__(self, config: Config, *, store: Store | None = None) -> None:
        self.config = config
        settings = config.gateway
        self.settings = settings
        self.store = store if store is not None else Store(config.store_url)
        self.client = Tuneloop(config, self.store)
        self.metrics = GatewayMetrics()
        self.upstream = Upstream(
            self.store,
            local=LocalModels(
                max_batch=settings.local_batch,
                max_wait_ms=settings.local_batch_wait_ms,
                timeout_s=settings.timeout_s,
            ),
            timeout_s=settings.timeout_s,
            device=settings.device,
            providers=config.providers,
            breaker=BreakerSettings(
                settings.cooldown_after, settings.cooldown_window_s, settings.cooldown_s
            ),
        )
        self.fallbacks = [Target(spec, spec) for spec in settings.fallback or [config.teacher]]
        self.validator = import_object(settings.validator) if settings.validator else None
        self.require_keys = not is_loopback(settings.host)
        self.routes: dict[str, TaskRoutes] = {}
        self.scopes: dict[str, KeyScope] = {}
        self.opted_out: set[str] = set(config.capture.opted_out_tenants)
        self.ready = False
        self.problem: str | None = "not started"
        spill_dir = settings.spill_dir or config.workspace / "gateway-spill"
        self.calllog = CallLog(
            self.client,
            spill_dir=Path(spill_dir),
            queue_size=settings.log_queue,
            batch_size=settings.log_batch,
            flush_s=settings.log_flush_s,
            on_written=self.metrics.logged.inc,
            on_spilled=self.metrics.spilled.inc,
            on_rejected=self._on_rejected,
        )
        self._shadow_queue: asyncio.Queue[ShadowJob] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        # Blocking providers (callables, local models) answer in the loop's worker threads; a
        # slow one keeps its thread after its deadline, so there must be plenty of them.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="tuneloop-provider")
        )
        await asyncio.to_thread(self.reload)
        self.calllog.start()
        self._shadow_queue = asyncio.Queue(self.settings.shadow_queue)
        self._tasks = [asyncio.create_task(self._reload_loop())]
        self._tasks += [
            asyncio.create_task(self._shadow_worker()) for _ in range(self.settings.shadow_workers)
        ]

    async def stop(self) -> None:
        """Stop background work, then drain the call log (SIGTERM reaches here via uvicorn)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.calllog.close)
        self.upstream.close()
        self.metrics.close()
        self.store.close()

    def reload(self) -> None:
        """Read registry stages, opt-outs and keys; keep the last good state if the store fails."""
        try:
            with self.store.session() as session:
                rows = [
                    StageRow(
                        task,
                        version,
                        stage,
                        percent,
                        serve if isinstance(serve := (config or {}).get("serve"), str) else None,
                    )
                    for task, version, stage, percent, config in session.execute(
                        select(
                            ModelVersion.task,
                            ModelVersion.version,
                            ModelVersion.stage,
                            ModelVersion.traffic_percent,
                            ModelVersion.config,
                        ).where(ModelVersion.stage.in_(ROUTED_STAGES))
                    )
                ]
                opted = set(session.scalars(select(OptOut.tenant)))
            scopes = load_scopes(self.store)
        except TuneloopError as exc:
            self.problem = f"store unavailable: {exc}"
            return
        routes = routes_from_stages(rows)
        if routes != self.routes:
            self.routes = routes
            keep = {
                target.spec
                for task in routes.values()
                for target in (task.production, task.canary, task.shadow)
                if target
            }
            self.upstream.forget(keep | {target.spec for target in self.fallbacks})
        self.opted_out = set(self.config.capture.opted_out_tenants) | opted
        self.scopes = scopes
        self.ready, self.problem = True, None

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_s)
            await asyncio.to_thread(self.reload)

    # -- a call ------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> KeyScope | None:
        """The caller's key scope; 401 when keys are in use and none valid was sent."""
        if not self.scopes and not self.require_keys:
            return None
        token = (authorization or "").removeprefix("Bearer ").strip()
        scope = find_scope(self.scopes, token) if token else None
        if scope is None:
            raise APIError(
                401,
                "missing or unknown API key (send Authorization: Bearer KEY)",
                code="invalid_api_key",
            )
        return scope

    def context(
        self, request: ChatCompletionRequest, headers: dict[str, str], scope: KeyScope | None
    ) -> CallContext:
        """Task, tenant and session from headers, then metadata; checked against the key."""
        metadata = dict(request.metadata or {})
        kind = request.model.partition(":")[0]
        direct = None
        if ":" in request.model:
            if kind not in self.settings.passthrough:
                raise APIError(
                    400,
                    f"model {request.model!r}: provider kind {kind!r} is not "
                    "accepted from requests (gateway.passthrough)",
                    code="model_not_found",
                    param="model",
                )
            direct = Target(request.model, request.model)
        task = (
            headers.get("x-tuneloop-task")
            or metadata.pop("task", None)
            or (self.config.task if direct else request.model)
        )
        tenant = (
            headers.get("x-tuneloop-tenant")
            or metadata.pop("tenant", None)
            or (scope.default_tenant if scope else None)
        )
        session_id = (
            headers.get("x-tuneloop-session")
            or metadata.pop("session_id", None)
            or metadata.pop("session", None)
            or request.user
        )
        metadata.pop("task", None)
        metadata.pop("tenant", None)
        if scope is not None:
            if not scope.allows_task(task):
                raise APIError(
                    403, f"this API key may not call task {task!r}", code="task_not_allowed"
                )
            if scope.tenants and tenant is None:
                raise APIError(
                    403,
                    "this API key serves several tenants: name one with X-Tuneloop-Tenant",
                    code="tenant_required",
                )
            if not scope.allows_tenant(tenant):
                raise APIError(
                    403,
                    f"this API key may not act for tenant {tenant!r}",
                    code="tenant_not_allowed",
                )
        for name, value in (("task", task), ("tenant", tenant), ("session", session_id)):
            if value is not None and len(value) > 200:
                raise APIError(400, f"{name} is {len(value)} characters; at most 200", param=name)
        schema = request_schema(request.response_format)
        if schema is not None:
            import jsonschema

            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise APIError(
                    400,
                    f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}",
                    param="response_format",
                ) from None
        call_id = uuid.uuid4().hex
        by_tenant = self.settings.sticky_by == "tenant"
        sticky = (tenant if by_tenant else session_id) or session_id or tenant or call_id
        return CallContext(
            call_id=call_id,
            task=task,
            tenant=tenant,
            session_id=session_id,
            sticky_key=sticky,
            direct=direct,
            metadata=metadata,
            scope=scope,
        )

    def rules(self, task: str, options: RequestOptions) -> OutputCheck:
        return output_check(
            task,
            options.response_format,
            json_tasks=self.settings.json_tasks,
            unwrap_keys=self.settings.unwrap_keys,
            validator=self.validator,
            validator_name=self.settings.validator or "validator",
        )

    def _plan(
        self, context: CallContext
    ) -> tuple[TaskRoutes | None, str, Target | None, list[Target]]:
        """(routes, route, routed target, every target to try in order) of a call."""
        routes = self.routes.get(context.task)
        first: Target | None = context.direct
        route = "direct"
        if first is None:
            route, first = pick_route(routes, context.sticky_key)
        return routes, route, first, plan(first, self.fallbacks)

    def _no_answer(self, context: CallContext, route: str, exc: AllProvidersFailed) -> APIError:
        """Every provider failed or was skipped: 502/503 naming each and why."""
        self._count_failures(context.task, exc.trail)
        reasons = "; ".join(f"{a.provider}: {a.error}" for a in exc.trail)
        status = 503 if all(a.outcome == "skipped" for a in exc.trail) else 502
        self.metrics.requests.labels(context.task, "none", route, str(status)).inc()
        return APIError(
            status,
            f"no provider answered task {context.task!r} ({reasons})",
            code="upstream_failed",
            headers={"X-Tuneloop-Route": route, "X-Tuneloop-Fallback-Reason": reasons[:500]},
        )

    async def answer(self, request: ChatCompletionRequest, context: CallContext) -> Answer:
        """The routed version, then each fallback (one chain); 502/503 naming every failure."""
        routes, route, first, targets = self._plan(context)
        chain = self.upstream.chain(context.task, targets, self.rules)
        messages = request.message_dicts()
        options = request.options()
        try:
            completion = await chain.acomplete(messages, options=options)
        except AllProvidersFailed as exc:
            raise self._no_answer(context, route, exc) from None
        self._count_failures(context.task, completion.trail)
        answered = next(
            (a.provider for a in reversed(completion.trail) if a.outcome == "ok"), targets[-1].name
        )
        target = next((t for t in targets if t.name == answered), targets[-1])
        self.metrics.upstream_latency.labels(context.task, target.name).observe(
            completion.latency_ms / 1000
        )
        served_route = route if target == first else "fallback"
        self._shadow(context, routes, route, messages, options)
        return Answer(completion.text, completion, target, served_route, failures(completion.trail))

    async def open_stream(self, request: ChatCompletionRequest, context: CallContext) -> LiveStream:
        """Start the route's stream and wait for its first piece. Until then a failing provider
        hands over to the next, as in a plain call, and no provider at all is a 502/503; once
        text is out, the stream cannot change provider (:meth:`stream_events`)."""
        routes, route, first, targets = self._plan(context)
        chain = self.upstream.chain(context.task, targets, self.rules)
        messages = request.message_dicts()
        options = request.options()
        chunks = chain.astream(messages, options=options)
        try:
            chunk = await anext(chunks)
        except AllProvidersFailed as exc:
            raise self._no_answer(context, route, exc) from None
        except StopAsyncIteration:  # a chain ends in a completion or an error; never this
            raise APIError(
                502, "the upstream stream ended at once", code="upstream_failed"
            ) from None
        if chunk.completion is not None:  # no text at all: the answer came whole
            trail = chunk.completion.trail
            answered = next((a.provider for a in reversed(trail) if a.outcome == "ok"), None)
        else:
            trail, answered = chunk.trail, chunk.provider
        self._count_failures(context.task, trail)
        target = next((t for t in targets if t.name == answered), targets[-1])
        first_token_s = time.perf_counter() - context.started
        served_route = route if target == first else "fallback"
        self.metrics.first_token.labels(context.task, served_route).observe(first_token_s)
        self._shadow(context, routes, route, messages, options)
        return LiveStream(chunks, chunk, target, served_route, failures(trail), first_token_s)

    async def stream_events(
        self, request: ChatCompletionRequest, context: CallContext, live: LiveStream
    ) -> AsyncIterator[str]:
        """The stream as OpenAI's SSE events, each delta as it arrives; then the finish chunk,
        the usage chunk when asked for, ``[DONE]``. A failure after the first delta ends the
        stream with an error event in OpenAI's shape. The call is logged once, at the end,
        with the text as sent, whatever happened (a client that went away included)."""
        response_id, created = f"chatcmpl-{context.call_id}", int(time.time())
        model, usage_field = live.target.name, request.wants_usage_chunk
        parts: list[str] = []
        completion: Completion | None = None
        problem: str | None = "client_disconnected"

        def event(delta: dict[str, Any] | None, **extra: Any) -> str:
            body = chunk_body(
                response_id, model, created, delta, with_usage_field=usage_field, **extra
            )
            return sse(body)

        try:
            yield event({"role": "assistant", "content": ""})
            chunk = live.first
            while chunk.completion is None:
                if chunk.text:
                    parts.append(chunk.text)
                    yield event({"content": chunk.text})
                try:
                    chunk = await anext(live.chunks)
                except ProviderError as exc:
                    problem = error_kind(exc)
                    self._count_failures(
                        context.task, (Attempt(model, "failed", error_kind(exc), str(exc)),)
                    )
                    message = (
                        str(exc)
                        if isinstance(exc, StreamInterrupted)
                        else f"{model} failed after its answer began streaming: {exc}"
                    )
                    yield sse(
                        APIError(
                            502,
                            message,
                            code="stream_interrupted",
                        ).body()
                    )
                    return
            completion, problem = chunk.completion, None
            yield event({}, finish_reason=completion.finish_reason or "stop")
            if usage_field:
                usage = usage_body(completion.prompt_tokens, completion.completion_tokens)
                yield sse(chunk_body(response_id, model, created, None, usage=usage))
            yield "data: [DONE]\n\n"
        finally:
            self._finish_stream(request, context, live, "".join(parts), completion, problem)
            await live.chunks.aclose()  # type: ignore[attr-defined]

    def _finish_stream(
        self,
        request: ChatCompletionRequest,
        context: CallContext,
        live: LiveStream,
        text: str,
        completion: Completion | None,
        problem: str | None,
    ) -> None:
        """Log a stream once: its text as sent, the check made after the fact, the time to
        first token; an unfinished one with why it stopped."""
        extra: dict[str, Any] = {
            "stream": True,
            "first_token_ms": round(live.first_token_s * 1000, 3),
        }
        if completion is None:
            completion = Completion(
                text=text,
                model=live.target.name,
                provider=live.target.name,
                latency_ms=(time.perf_counter() - context.started) * 1000,
            )
            extra["stream_error"] = problem
        else:
            extra["check"] = self._check_after(context.task, request, completion, live.target)
            self.metrics.upstream_latency.labels(context.task, live.target.name).observe(
                completion.latency_ms / 1000
            )
            completion = completion.replace(text=text)
        status = "200" if problem is None else problem
        self.finish(
            request,
            context,
            Answer(text, completion, live.target, live.route, live.trail),
            extra=extra,
            status=status,
        )

    def _check_after(
        self, task: str, request: ChatCompletionRequest, completion: Completion, target: Target
    ) -> str:
        """The task's answer checks on a finished stream: ``ok`` or the failure's reason,
        counted; never a fallback, since the client already has the text."""
        try:
            self.rules(task, request.options()).apply(completion.replace(provider=target.name))
        except InvalidOutput as exc:
            self.metrics.stream_checks.labels(task, target.name, exc.reason).inc()
            return exc.reason
        return "ok"

    def _count_failures(self, task: str, trail: tuple[Attempt, ...]) -> None:
        for attempt in trail:
            if attempt.outcome != "ok":
                self.metrics.fallbacks.labels(
                    task, attempt.provider, attempt.error or attempt.outcome
                ).inc()

    def finish(
        self,
        request: ChatCompletionRequest,
        context: CallContext,
        answer: Answer,
        *,
        extra: dict[str, Any] | None = None,
        status: str = "200",
    ) -> None:
        """Metrics and the log record of an answered call (never blocks on the store)."""
        completion, task, model = answer.completion, context.task, answer.target.name
        elapsed = time.perf_counter() - context.started
        self.metrics.requests.labels(task, model, answer.route, status).inc()
        self.metrics.latency.labels(task, answer.route).observe(elapsed)
        if completion.prompt_tokens:
            self.metrics.tokens.labels(task, model, "prompt").inc(completion.prompt_tokens)
        if completion.completion_tokens:
            self.metrics.tokens.labels(task, model, "completion").inc(completion.completion_tokens)
        if completion.cost_usd:
            self.metrics.cost.labels(task, model).inc(completion.cost_usd)
        gateway_info: dict[str, Any] = {"route": answer.route, "served_by": model}
        if answer.trail:
            gateway_info["fallback"] = answer.trail
        gateway_info.update(extra or {})
        self.submit(
            context,
            request.message_dicts(),
            answer.text,
            completion,
            source="gateway",
            session_id=context.session_id,
            call_id=context.call_id,
            latency_ms=elapsed * 1000,
            gateway_info=gateway_info,
        )

    def submit(
        self,
        context: CallContext,
        messages: list[dict[str, Any]],
        text: str,
        completion: Completion,
        *,
        source: str,
        session_id: str | None,
        call_id: str,
        latency_ms: float,
        gateway_info: dict[str, Any],
    ) -> None:
        if context.tenant is not None and context.tenant in self.opted_out:
            self.metrics.not_stored.inc()
            return
        record: dict[str, Any] = {
            "id": call_id,
            "messages": messages,
            "response": text,
            "model": completion.model[:200],
            "provider": completion.provider[:200],
            "task": context.task,
            "source": source,
            "latency_ms": latency_ms,
            "metadata": {**context.metadata, "gateway": gateway_info},
            "created_at": context.created_at.isoformat(),
        }
        optional = {
            "tenant": context.tenant,
            "session_id": session_id,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "cost_usd": completion.cost_usd,
        }
        record.update({key: value for key, value in optional.items() if value is not None})
        self.calllog.submit(record)
        self.metrics.log_queue.set(self.calllog.depth)

    def _on_rejected(self, record: dict[str, Any], problem: str) -> None:
        """A record capture refuses (a message role it does not know, …): counted and named."""
        self.metrics.not_stored.inc()
        log.warning("call %s not stored: %s", record.get("id"), problem)

    # -- shadow ------------------------------------------------------------------------------

    def _shadow(
        self,
        context: CallContext,
        routes: TaskRoutes | None,
        route: str,
        messages: list[dict[str, Any]],
        options: RequestOptions,
    ) -> None:
        if (
            routes is None
            or routes.shadow is None
            or route == "direct"
            or (self._shadow_queue is None)
        ):
            return
        if context.tenant is not None and context.tenant in self.opted_out:
            return
        try:
            self._shadow_queue.put_nowait(ShadowJob(context, routes.shadow, messages, options))
        except asyncio.QueueFull:
            self.metrics.shadow.labels(context.task, routes.shadow.name, "dropped").inc()
        self.metrics.shadow_queue.set(self._shadow_queue.qsize())

    async def _shadow_worker(self) -> None:
        assert self._shadow_queue is not None
        while True:
            job = await self._shadow_queue.get()
            await self._run_shadow(job)

    async def _run_shadow(self, job: ShadowJob) -> None:
        """Answer a copy with the shadow version and log it linked to the served call."""
        context, target = job.context, job.target
        started = time.perf_counter()
        member = Checked(
            target, context.task, self.rules, self.settings.timeout_s, self.upstream.provider
        )
        try:
            completion = await member.acomplete(job.messages, options=job.options)
            text, outcome = completion.text, "ok"
        except InvalidOutput as exc:
            if not isinstance(exc.completion, Completion):
                self.metrics.shadow.labels(context.task, target.name, exc.reason).inc()
                return
            completion, text, outcome = exc.completion, exc.completion.text, exc.reason
        except ProviderError as exc:
            self.metrics.shadow.labels(context.task, target.name, error_kind(exc)).inc()
            return
        self.metrics.shadow.labels(context.task, target.name, outcome).inc()
        # A session of its own: a shadow answer must not look like the user asking again.
        self.submit(
            context,
            job.messages,
            text,
            completion,
            source="shadow",
            session_id=f"shadow:{context.call_id}",
            call_id=f"{context.call_id}-shadow",
            latency_ms=(time.perf_counter() - started) * 1000,
            gateway_info={
                "route": "shadow",
                "served_by": target.name,
                "shadow_of": context.call_id,
                "check": outcome,
            },
        )

    # -- feedback ----------------------------------------------------------------------------

    async def feedback(
        self,
        call_id: str,
        scope: KeyScope | None,
        tenant: str | None,
        kind: str,
        *,
        score: float | None,
        edited: str | None,
        comment: str | None,
        value: dict[str, Any] | None,
    ) -> float:
        """Record feedback on a call the gateway answered, as its tenant only."""
        call_id = call_id.removeprefix("chatcmpl-")
        row = None
        deadline = time.monotonic() + max(2.0, 3 * self.settings.log_flush_s)
        while row is None:
            row = await asyncio.to_thread(self._find_call, call_id)
            if row is None:
                if time.monotonic() > deadline:
                    raise APIError(
                        404,
                        f"no stored call {call_id!r} (unknown id, an opted-out "
                        "tenant, or not written yet: retry shortly)",
                        code="call_not_found",
                        param="id",
                    )
                await asyncio.sleep(0.05)
        interaction_id, owner = row
        if (scope is not None and scope.tenants and owner not in scope.tenants) or (
            tenant is not None and owner != tenant
        ):
            raise APIError(
                404,
                f"no stored call {call_id!r} for this tenant",
                code="call_not_found",
                param="id",
            )
        try:
            return await asyncio.to_thread(
                self.client.feedback,
                interaction_id,
                kind,
                value=value,
                score=score,
                edited=edited,
                comment=comment,
            )
        except InputError as exc:
            raise APIError(400, str(exc), code="invalid_feedback") from None
        except StoreError as exc:
            raise APIError(
                503, f"the store is unavailable: {exc}", code="store_unavailable"
            ) from None

    def _find_call(self, call_id: str) -> tuple[str, str | None] | None:
        with self.store.session() as session:
            found = session.execute(
                select(Interaction.id, Interaction.tenant)
                .where(or_(Interaction.idempotency_key == call_id, Interaction.id == call_id))
                .limit(1)
            ).first()
        return (found[0], found[1]) if found else None
