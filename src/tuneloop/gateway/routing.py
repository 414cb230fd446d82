"""Which model answers a call, and what happens when it fails: small pure functions and one
small state object, so tests drive routing without a server or a clock.

A task's routes come from its registry stages: the production version takes the traffic, a canary
version a configured share of it (sticky: the same user or session always lands on the same side),
a shadow version answers a copy in the background. Every route ends in the fallback providers
(the teacher by default): :func:`plan` lists the routed version then each fallback, and the
providers package's fallback chain tries them in order, skipping members whose circuit is open.
:func:`check_answer` is what makes an answer count as a failure besides an error: prose where
JSON was due, a schema failure, a validator's veto.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.jsontext import normalise_output

ROUTES = ("production", "canary", "fallback", "direct")


@dataclass(frozen=True)
class Target:
    """One model to try: ``name`` is what headers and logs show, ``spec`` builds the provider."""

    name: str
    spec: str


@dataclass(frozen=True)
class StageRow:
    """What routing needs of a registry version."""

    task: str
    version: int
    stage: str
    traffic_percent: float
    serve: str | None = None  # a provider spec that serves it elsewhere (vLLM, …)


@dataclass(frozen=True)
class TaskRoutes:
    """The versions serving one task right now."""

    task: str
    production: Target | None = None
    canary: Target | None = None
    canary_percent: float = 0.0
    shadow: Target | None = None


def version_target(row: StageRow) -> Target:
    """A version is served in-process (``registry:`` spec) unless its config names a provider
    that serves it (``serve = "openai-compatible:..."`` for a vLLM server, for example)."""
    name = f"{row.task}@v{row.version}"
    return Target(name=name, spec=row.serve or f"registry:{name}")


def routes_from_stages(rows: Iterable[StageRow]) -> dict[str, TaskRoutes]:
    """Registry rows → routes per task; the newest version wins when a stage holds several."""
    newest: dict[tuple[str, str], StageRow] = {}
    for row in rows:
        key = (row.task, row.stage)
        if key not in newest or row.version > newest[key].version:
            newest[key] = row
    routes: dict[str, TaskRoutes] = {}
    for task in sorted({task for task, _ in newest}):
        production = newest.get((task, "production"))
        canary = newest.get((task, "canary"))
        shadow = newest.get((task, "shadow"))
        routes[task] = TaskRoutes(
            task=task,
            production=version_target(production) if production else None,
            canary=version_target(canary) if canary else None,
            canary_percent=canary.traffic_percent if canary else 0.0,
            shadow=version_target(shadow) if shadow else None,
        )
    return routes


def sticky_bucket(key: str, salt: str = "") -> float:
    """A stable number in [0, 100) for a user or session: the same key, the same side."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def pick_route(routes: TaskRoutes | None, sticky_key: str) -> tuple[str, Target | None]:
    """(route, version): the canary for its share of keys, else production, else no version
    (the call goes straight to the fallback providers)."""
    if routes is None:
        return "fallback", None
    canary_side = routes.production is None or (
        sticky_bucket(sticky_key, routes.task) < routes.canary_percent
    )
    if routes.canary is not None and routes.canary_percent > 0 and canary_side:
        return "canary", routes.canary
    if routes.production is not None:
        return "production", routes.production
    return "fallback", None


def plan(first: Target | None, fallbacks: Sequence[Target]) -> list[Target]:
    """The providers to try, in order, each once."""
    ordered: list[Target] = []
    for target in ([first] if first else []) + list(fallbacks):
        if target.spec not in {seen.spec for seen in ordered}:
            ordered.append(target)
    return ordered


class AnswerRejected(Exception):
    """An answer arrived but fails the task's checks; the next provider is tried."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Validator = Callable[[str, str], Any]


@dataclass(frozen=True)
class AnswerRules:
    """What a task's answers must be: JSON (and which envelope keys to unwrap), a JSON schema,
    a custom validator ``(task, text)`` that returns False or raises ValueError to reject."""

    json: bool = False
    unwrap_keys: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None
    validator: Validator | None = None


def rules_for(
    task: str,
    response_format: dict[str, Any] | None,
    *,
    json_tasks: Sequence[str],
    unwrap_keys: Sequence[str],
    validator: Validator | None,
) -> AnswerRules:
    """A call's rules: JSON when the task is a JSON task or the request asks for JSON."""
    kind = (response_format or {}).get("type")
    schema = None
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
    wants_json = task in json_tasks or kind in ("json_object", "json_schema")
    return AnswerRules(
        json=wants_json,
        unwrap_keys=tuple(unwrap_keys) if wants_json else (),
        schema=schema if isinstance(schema, dict) else None,
        validator=validator,
    )


def check_answer(task: str, text: str, rules: AnswerRules) -> str:
    """The answer as the client gets it (JSON normalised), or AnswerRejected naming why."""
    value: Any = None
    if rules.json:
        normalised = normalise_output(text, unwrap_keys=rules.unwrap_keys)
        if not normalised.ok:
            raise AnswerRejected("invalid_json", "the answer is not JSON")
        text, value = normalised.text, normalised.value
    if rules.schema is not None:
        import jsonschema

        try:
            jsonschema.validate(value, rules.schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(part) for part in exc.absolute_path) or "(root)"
            raise AnswerRejected("schema", f"at {where}: {exc.validator} failed") from None
        except jsonschema.SchemaError as exc:
            raise AnswerRejected(
                "schema", f"the request's schema is invalid: {exc.message}"
            ) from None
    if rules.validator is not None:
        try:
            verdict = rules.validator(task, text)
        except ValueError as exc:
            raise AnswerRejected("validator", str(exc)[:200]) from None
        if verdict is False:
            raise AnswerRejected("validator", "the validator rejected the answer")
    return text
