"""Checking what an app hands to ``log()`` before it reaches the store.

Every problem is an InputError naming the field, so a bad call fails at the call site (or at its
line of an import file) instead of as a database error later. Lengths are checked here because
SQLite does not enforce them and PostgreSQL would reject the whole batch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tuneloop.capture.quality import json_validity
from tuneloop.errors import InputError

ROLES = ("system", "user", "assistant", "tool")
MAX_LENGTHS = {"id": 200, "task": 200, "source": 20, "model": 200, "provider": 200,
               "tenant": 200, "session_id": 200}
# Keyword arguments of ``Tuneloop.log`` besides messages and response (also import line keys).
LOG_OPTIONS = ("id", "model", "task", "metadata", "tags", "tenant", "session_id", "provider",
               "source", "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd",
               "created_at")
# Columns derived from others: not part of what identifies a call.
DERIVED = ("prompt_hash", "valid_json", "idempotency_key")


def prepare_log(messages: Any, response: Any, **options: Any) -> dict[str, Any]:
    """Column values of a new interaction (no id yet), or an InputError naming the bad field."""
    unknown = sorted(set(options) - set(LOG_OPTIONS))
    if unknown:
        raise InputError(f"unknown log field(s) {', '.join(unknown)}; allowed: "
                         f"messages, response, {', '.join(LOG_OPTIONS)}")
    messages = check_messages(messages)
    if not isinstance(response, str):
        raise InputError(f"response must be text, got {_short(response)}")
    values = check_options(options)
    values.update(
        messages=messages,
        response=response,
        prompt_hash=prompt_hash(messages),
        valid_json=json_validity(response, values.get("metadata_")),
    )
    return values


def to_utc(moment: datetime) -> datetime:
    """Aware UTC time; naive times are taken as UTC (SQLite keeps no offset, so all must be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_time(value: Any, field: str = "created_at") -> datetime:
    """A datetime, an ISO-8601 string or Unix seconds, as aware UTC."""
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            return to_utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise InputError(f"{field} must be an ISO-8601 time or Unix seconds, got {value!r}")


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces); times as ISO-8601 in UTC."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return to_utc(value).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def content_hash(value: Any) -> str:
    """sha256 of the canonical JSON of a value: equal content, equal hashes."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    """Equal prompts, equal hashes (the key of regenerate detection and of the split)."""
    return content_hash(messages)


def call_key(values: Mapping[str, Any], occurrence: int = 0) -> str:
    """The idempotency key of prepared values that carry no caller id: a hash of the call.

    ``occurrence`` tells apart equal calls that are really several (the second identical line
    of one import file is ``1``), so importing that file again still finds each of them.
    """
    digest = content_hash({key: value for key, value in values.items() if key not in DERIVED})
    return digest if occurrence == 0 else f"{digest}#{occurrence}"


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """A non-empty list of ``{role, content}`` dicts with known roles."""
    if not isinstance(messages, list) or not messages:
        raise InputError(f"messages must be a non-empty list of {{role, content}} objects, "
                         f"got {_short(messages)}")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InputError(f"{where} must be an object with role and content, got "
                             f"{_short(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise InputError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        content = message.get("content")
        tool_call_only = content is None and role == "assistant" and message.get("tool_calls")
        if not (isinstance(content, str) or tool_call_only or _is_parts(content)):
            raise InputError(f"{where}.content must be text (or a list of content parts), "
                             f"got {_short(content)}")
    check_json("messages", messages)
    return messages


def _is_parts(content: Any) -> bool:
    return isinstance(content, list) and all(isinstance(part, dict) for part in content)


def check_json(field: str, value: Any) -> None:
    """The value must be storable as JSON (no NaN: PostgreSQL's JSONB refuses it)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{field} must be JSON-serializable: {exc}") from None


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Typed, length-checked column values from ``log()`` keyword arguments (None = unset)."""
    values: dict[str, Any] = {}
    for field, limit in MAX_LENGTHS.items():
        value = options.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{field} must be non-empty text, got {_short(value)}")
        if len(value) > limit:
            raise InputError(f"{field} is {len(value)} characters; at most {limit} fit")
        values["idempotency_key" if field == "id" else field] = value
    metadata = options.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InputError(f"metadata must be an object, got {_short(metadata)}")
        check_json("metadata", metadata)
        values["metadata_"] = metadata
    tags = options.get("tags")
    if tags is not None:
        if not isinstance(tags, list | tuple) or not all(isinstance(tag, str) for tag in tags):
            raise InputError(f"tags must be a list of strings, got {_short(tags)}")
        values["tags"] = list(tags)
    for field in ("latency_ms", "cost_usd"):
        values[field] = _number(options.get(field), field, float)
    for field in ("prompt_tokens", "completion_tokens"):
        values[field] = _number(options.get(field), field, int)
    if options.get("created_at") is not None:
        values["created_at"] = parse_time(options["created_at"])
    return {key: value for key, value in values.items() if value is not None}


def _number(value: Any, field: str, kind: type[int] | type[float]) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int) if kind is int else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < 0:
        expected = "a whole number ≥ 0" if kind is int else "a number ≥ 0"
        raise InputError(f"{field} must be {expected}, got {value!r}")
    return kind(value)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
