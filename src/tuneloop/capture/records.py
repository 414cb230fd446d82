"""Checking what an app hands to ``log()`` before it reaches the store.

Every problem is an InputError naming the field, so a bad call fails at the call site (or at its
line of an import file) instead of as a database error later. Lengths are checked here because
SQLite does not enforce them and PostgreSQL would reject the whole batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tuneloop.capture.quality import json_validity
from tuneloop.config import CaptureConfig
from tuneloop.errors import InputError

ROLES = ("system", "user", "assistant", "tool")
MAX_LENGTHS = {
    "id": 200,
    "task": 200,
    "source": 20,
    "model": 200,
    "provider": 200,
    "tenant": 200,
    "session_id": 200,
}
# Keyword arguments of ``Tuneloop.log`` besides messages and response (also import line keys).
LOG_OPTIONS = (
    "id",
    "model",
    "task",
    "metadata",
    "tags",
    "tenant",
    "session_id",
    "provider",
    "source",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "created_at",
)
# Feedback kinds that take a score in [0, 1], and those that carry the user's edited output.
SCORED_KINDS = frozenset({"validation"})
EDITED_KINDS = frozenset({"correction", "saved", "saved_with_edits"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME_CHARS = 40  # longer "times" are not quoted back in errors
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
# Columns derived from others: not part of what identifies a call.
DERIVED = ("prompt_hash", "valid_json", "idempotency_key")


def prepare_log(
    messages: Any, response: Any, capture: CaptureConfig | None = None, /, **options: Any
) -> dict[str, Any]:
    """Column values of a new interaction (no id yet), or an InputError naming the bad field.

    ``capture`` gives the limits (``max_text_chars``, ``max_future_s``); the defaults apply
    without it. Messages never quote the user's text, only what is wrong with it and where.
    """
    limits = capture or CaptureConfig()
    unknown = sorted(set(options) - set(LOG_OPTIONS))
    if unknown:
        raise InputError(
            f"unknown log field(s) {', '.join(short_name(key) for key in unknown)}; "
            f"allowed: messages, response, {', '.join(LOG_OPTIONS)}"
        )
    messages = check_messages(messages, limits.max_text_chars)
    check_text("response", response, limits.max_text_chars)
    values = check_options(options, limits)
    values.update(
        messages=messages,
        response=response,
        prompt_hash=prompt_hash(messages),
        valid_json=json_validity(response, values.get("metadata_")),
    )
    return values


def check_text(field: str, value: Any, max_chars: int, *, empty_ok: bool = False) -> str:
    """Text a model or a user wrote: a string, not blank, not over the cap, storable."""
    if not isinstance(value, str):
        raise InputError(f"{field} must be text, got {describe(value)}")
    if not empty_ok and not value.strip():
        raise InputError(f"{field} is empty" + (" (only whitespace)" if value else ""))
    if len(value) > max_chars:
        raise InputError(
            f"{field} is {len(value):,} characters; at most {max_chars:,} are "
            "accepted (capture.max_text_chars)"
        )
    if "\x00" in value:
        raise InputError(
            f"{field} contains a NUL character (\\u0000), which the store "
            "cannot keep (PostgreSQL refuses it)"
        )
    return value


def to_utc(moment: datetime) -> datetime:
    """Aware UTC time; naive times are taken as UTC (SQLite keeps no offset, so all must be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_time(value: Any, field: str = "created_at", max_future_s: int | None = None) -> datetime:
    """A datetime, an ISO-8601 string or Unix seconds, as aware UTC, between 1970 and a little
    after now (``max_future_s``, default ``capture.max_future_s``): anything else is a mistake
    (milliseconds given as seconds, a wrong time zone, a missing date) that would skew every
    "recent" query."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = to_utc(value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            moment = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise InputError(
                f"{field} {value!r} is out of range (Unix seconds since 1970)"
            ) from None
    elif isinstance(value, str) and len(value) <= MAX_TIME_CHARS:
        with contextlib.suppress(ValueError, OverflowError):
            moment = to_utc(datetime.fromisoformat(value.strip()))
    if moment is None:
        shown = repr(value) if len(repr(value)) <= MAX_TIME_CHARS else describe(value)
        raise InputError(f"{field} must be an ISO-8601 time or Unix seconds, got {shown}")
    limit = CaptureConfig().max_future_s if max_future_s is None else max_future_s
    if moment < EPOCH:
        raise InputError(f"{field} {moment.isoformat()} is before 1970")
    if moment > datetime.now(UTC) + timedelta(seconds=limit):
        raise InputError(
            f"{field} {moment.isoformat()} is in the future (more than {limit} s "
            "ahead; capture.max_future_s)"
        )
    return moment


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces); times as ISO-8601 in UTC."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


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
    of one import file is ``1``, keyed ``<hash>#1``), so importing that file again still finds
    each of them.
    """
    return nth_key(
        content_hash({key: value for key, value in values.items() if key not in DERIVED}),
        occurrence,
    )


def nth_key(digest: str, occurrence: int) -> str:
    """The key of the ``occurrence``-th equal call (0: the first) with this call hash."""
    return digest if occurrence == 0 else f"{digest}#{occurrence}"


def check_messages(messages: Any, max_chars: int | None = None) -> list[dict[str, Any]]:
    """A non-empty list of ``{role, content}`` dicts with known roles; content is text or a list
    of typed parts (``{"type": "text", "text": ...}``, images, ...)."""
    max_chars = CaptureConfig().max_text_chars if max_chars is None else max_chars
    if not isinstance(messages, list) or not messages:
        raise InputError(
            f"messages must be a non-empty list of {{role, content}} objects, "
            f"got {describe(messages)}"
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InputError(
                f"{where} must be an object with role and content, got {describe(message)}"
            )
        role = message.get("role")
        if role not in ROLES:
            raise InputError(
                f"{where}.role must be one of {', '.join(ROLES)}, got {short_name(role)}"
            )
        content = message.get("content")
        if content is None and role == "assistant" and message.get("tool_calls"):
            pass  # a tool call only
        elif isinstance(content, list):
            _check_parts(f"{where}.content", content, max_chars)
        elif isinstance(content, str):
            check_text(f"{where}.content", content, max_chars, empty_ok=True)
        else:
            raise InputError(
                f"{where}.content must be text (or a list of content parts), "
                f"got {describe(content)}"
            )
    check_storable("messages", messages, max_chars)
    return messages


def _check_parts(where: str, parts: list[Any], max_chars: int) -> None:
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InputError(
                f"{where}[{index}] must be a content part with a type "
                f'({{"type": "text", "text": ...}}), got {describe(part)}'
            )
        if part["type"] == "text":
            check_text(f"{where}[{index}].text", part.get("text"), max_chars, empty_ok=True)


def check_storable(field: str, value: Any, max_chars: int) -> None:
    """JSON the store can keep: serializable, no NaN, no NUL anywhere, not over the cap."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{field} must be JSON-serializable: {exc}") from None
    if len(text) > max_chars:
        raise InputError(
            f"{field} is {len(text):,} characters as JSON; at most {max_chars:,} "
            "are accepted (capture.max_text_chars)"
        )
    if "\\u0000" in text and _has_nul(value):  # JSON spells NUL \u0000: look closer
        raise InputError(
            f"{field} contains a NUL character (\\u0000), which the store "
            "cannot keep (PostgreSQL refuses it)"
        )


def feedback_value(
    kind: str,
    value: Any,
    *,
    score: Any = None,
    edited: Any = None,
    comment: Any = None,
    capture: CaptureConfig | None = None,
) -> dict[str, Any]:
    """The checked value of a feedback event: ``score`` only where the kind is scored,
    ``edited`` only where it carries the user's version (and then not blank)."""
    limits = capture or CaptureConfig()
    if value is not None and not isinstance(value, Mapping):
        raise InputError(f"feedback value must be an object, got {describe(value)}")
    data = dict(value or {})
    if score is not None:
        if kind not in SCORED_KINDS:
            raise InputError(
                f"feedback {kind!r} takes no score (only {', '.join(sorted(SCORED_KINDS))} does)"
            )
        data["score"] = score
    if edited is not None:
        if kind not in EDITED_KINDS:
            raise InputError(
                f"feedback {kind!r} takes no edited text (only "
                f"{', '.join(sorted(EDITED_KINDS))} do)"
            )
        data["edited"] = edited
    if kind in EDITED_KINDS and "edited" in data:
        check_text("edited", data["edited"], limits.max_text_chars)
    if comment is not None:
        check_text("feedback comment", comment, limits.max_text_chars, empty_ok=True)
    check_storable("feedback value", data, limits.max_text_chars)
    return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


def check_json(field: str, value: Any) -> None:
    """The value must be storable as JSON (no NaN: PostgreSQL's JSONB refuses it)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{field} must be JSON-serializable: {exc}") from None


def check_options(
    options: Mapping[str, Any], capture: CaptureConfig | None = None
) -> dict[str, Any]:
    """Typed, length-checked column values from ``log()`` keyword arguments (None = unset)."""
    limits = capture or CaptureConfig()
    values: dict[str, Any] = {}
    for field, limit in MAX_LENGTHS.items():
        value = options.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{field} must be non-empty text, got {describe(value)}")
        if len(value) > limit:
            raise InputError(f"{field} is {len(value)} characters; at most {limit} fit")
        if "\x00" in value:
            raise InputError(f"{field} contains a NUL character (\\u0000)")
        values["idempotency_key" if field == "id" else field] = value
    metadata = options.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InputError(f"metadata must be an object, got {describe(metadata)}")
        check_storable("metadata", metadata, limits.max_text_chars)
        values["metadata_"] = metadata
    tags = options.get("tags")
    if tags is not None:
        if not isinstance(tags, list | tuple) or not all(isinstance(tag, str) for tag in tags):
            raise InputError(f"tags must be a list of strings, got {describe(tags)}")
        check_storable("tags", list(tags), limits.max_text_chars)
        values["tags"] = list(tags)
    for field in ("latency_ms", "cost_usd"):
        values[field] = _number(options.get(field), field, float)
    for field in ("prompt_tokens", "completion_tokens"):
        values[field] = _number(options.get(field), field, int)
    if options.get("created_at") is not None:
        values["created_at"] = parse_time(options["created_at"], "created_at", limits.max_future_s)
    return {key: value for key, value in values.items() if value is not None}


def _number(value: Any, field: str, kind: type[int] | type[float]) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int) if kind is int else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < 0:
        expected = "a whole number ≥ 0" if kind is int else "a number ≥ 0"
        raise InputError(f"{field} must be {expected}, got {value!r}")
    return kind(value)


def describe(value: Any) -> str:
    """What a bad value is, without its content: errors never quote what users wrote."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"text of {len(value)} characters" if value else "empty text"
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item(s)"
    return f"a {type(value).__name__}"


def short_name(value: Any) -> str:
    """An identifier-like value (a role, a key, a kind) quoted; anything else described."""
    if isinstance(value, str) and NAME.fullmatch(value):
        return repr(value)
    return describe(value)
