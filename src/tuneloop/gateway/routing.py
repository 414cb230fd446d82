"""Which model answers a call, and what happens when it fails: small pure functions and one
small state object, so tests drive routing without a server or a clock.

A task's routes come from its registry stages: the production version takes the traffic, a canary
version a configured share of it (sticky: the same user or session always lands on the same side),
a shadow version answers a copy in the background. Every route ends in the fallback providers
(the teacher by default): :func:`plan` lists the routed version then each fallback, and the
providers package's fallback chain tries them in order, skipping members whose circuit is open.
:func:`output_check` is what makes an answer count as a failure besides an error: prose where
JSON was due, a schema failure, a validator's veto.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.providers import OutputCheck

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


Validator = Callable[[Any], Any]


def output_check(
    task: str,
    response_format: Mapping[str, Any] | None,
    *,
    json_tasks: Sequence[str],
    unwrap_keys: Sequence[str],
    validator: Validator | None,
    validator_name: str = "validator",
) -> OutputCheck:
    """What a call's answer must be: JSON when the task is a JSON task or the request asks for
    JSON (``response_format``), matching the request's JSON schema if it gave one, and passing
    the configured validator. The providers' ``OutputCheck`` applies it."""
    kind = (response_format or {}).get("type")
    schema = request_schema(response_format)
    wants_json = task in json_tasks or kind in ("json_object", "json_schema")
    return OutputCheck(
        json=wants_json,
        schema=schema,
        schema_name="the request's response_format schema",
        validator=validator,
        validator_name=validator_name,
        unwrap=tuple(unwrap_keys) if wants_json else (),
    )


def request_schema(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema of ``{"type": "json_schema", "json_schema": {"schema": {...}}}``."""
    if not response_format or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return dict(schema) if isinstance(schema, Mapping) else None
