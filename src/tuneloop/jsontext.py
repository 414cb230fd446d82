"""The one place that reads JSON out of model output.

Capture (``valid_json`` on interactions), curate, evaluate, providers and the gateway all ask the
same question — "is this answer JSON, and what is it?" — so they must get the same answer. The
rules, in order:

* Surrounding whitespace is ignored, and so is one Markdown fence around the whole answer
  (```` ```json\\n{...}\\n``` ```` or ```` ```json{...}``` ````): models add them and every client
  strips them.
* JSON is strict RFC 8259: ``NaN``, ``Infinity`` and ``-Infinity`` (Python's extension) are not
  JSON, because most consumers (JavaScript, Go, PostgreSQL ``jsonb``) reject them.
* Strict parsing (the default) requires the whole answer to be one JSON value: an app reading the
  output would fail on prose around it. ``lenient=True`` also finds JSON in prose: the first fenced
  block that parses, else the first ``{...}`` or ``[...]`` that does.

``normalise_output`` is the repair step a gateway or provider applies per task: take the JSON out
of fences and prose, and unwrap ``{"reasoning": ..., "layout": {...}}`` to the inner object while
keeping the reasoning beside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "JsonResult",
    "NormalisedOutput",
    "dumps_canonical",
    "expects_json",
    "extract_json",
    "is_valid_json",
    "normalise_output",
    "parse_json",
    "strip_fence",
]

# A fence around the whole answer: ```lang, an optional newline, the body, ```.
_WHOLE_FENCE = re.compile(
    r"^```[ \t]*([A-Za-z][A-Za-z0-9_+-]*)?[ \t]*\r?\n?(.*?)\r?\n?[ \t]*```$", re.DOTALL
)
_ANY_FENCE = re.compile(r"```[ \t]*([A-Za-z][A-Za-z0-9_+-]*)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_JSON_TAGS = ("json", "jsonc", "json5")
_MAX_SCAN_STARTS = 64  # lenient search tries at most this many '{' / '[' starts


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass(frozen=True)
class JsonResult:
    """Whether the text held JSON, the value (``None`` is a real ``null`` when ``ok``), and how
    it was found: ``whole`` (the text), ``fence`` (a whole-answer fence), ``embedded`` (lenient)."""

    ok: bool
    value: Any = None
    found: str = ""


_NOT_JSON = JsonResult(ok=False)


def strip_fence(text: str) -> tuple[str, str | None]:
    """The text inside a whole-answer fence and the fence's language (``""`` when untagged);
    ``(text.strip(), None)`` when there is no such fence."""
    stripped = text.strip()
    match = _WHOLE_FENCE.match(stripped)
    if match is None:
        return stripped, None
    return match.group(2).strip(), (match.group(1) or "").lower()


def _loads(text: str) -> JsonResult | None:
    try:
        value, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        return None
    if text[end:].strip():
        return None
    return JsonResult(ok=True, value=value)


def parse_json(text: str, *, lenient: bool = False) -> JsonResult:
    """Parse a model's answer by the module's rules; never raises."""
    if not isinstance(text, str):
        return _NOT_JSON
    body, language = strip_fence(text)
    result = _loads(body)
    if result is not None:
        return JsonResult(True, result.value, "whole" if language is None else "fence")
    if not lenient:
        return _NOT_JSON
    for match in _ANY_FENCE.finditer(text):
        result = _loads(match.group(2).strip())
        if result is not None:
            return JsonResult(True, result.value, "embedded")
    starts = 0
    for index, char in enumerate(text):
        if char not in "{[":
            continue
        starts += 1
        if starts > _MAX_SCAN_STARTS:
            break
        try:
            value, _end = _DECODER.raw_decode(text, index)
        except (ValueError, RecursionError):
            continue
        return JsonResult(True, value, "embedded")
    return _NOT_JSON


def is_valid_json(text: str, *, lenient: bool = False) -> bool:
    """Whether the answer is JSON by the module's rules."""
    return parse_json(text, lenient=lenient).ok


def extract_json(text: str, *, lenient: bool = False) -> Any | None:
    """The JSON value, or None when there is none (a literal ``null`` also gives None; use
    :func:`parse_json` when that difference matters)."""
    return parse_json(text, lenient=lenient).value


def expects_json(text: str, metadata: Mapping[str, Any] | None = None) -> bool:
    """Whether an answer is meant to be JSON: the caller said so
    (``metadata["response_format"]`` is ``json``/``json_object``/``json_schema``) or it looks like
    JSON (starts with ``{``/``[``, or is a fence tagged json or holding ``{``/``[``)."""
    if metadata:
        declared = metadata.get("response_format")
        if isinstance(declared, Mapping):
            declared = declared.get("type")
        if str(declared or "").lower() in ("json", "json_object", "json_schema"):
            return True
    body, language = strip_fence(text)
    if language in _JSON_TAGS or text.lstrip()[:7].lower() == "```json":  # also unclosed
        return True
    return body.startswith(("{", "["))


def dumps_canonical(value: Any) -> str:
    """Compact JSON with sorted keys: equal values give equal strings (for hashing, comparing)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class NormalisedOutput:
    """A repaired answer: ``text`` is what the caller gets (compact JSON when JSON was found),
    ``steps`` names each repair made, ``reasoning`` is what an unwrapped envelope carried."""

    text: str
    ok: bool
    value: Any = None
    reasoning: Any = None
    steps: tuple[str, ...] = field(default=())


def normalise_output(
    text: str,
    *,
    unwrap_keys: Sequence[str] = (),
    reasoning_keys: Sequence[str] = ("reasoning", "thinking", "explanation"),
) -> NormalisedOutput:
    """Take JSON out of fences and prose; unwrap ``{"reasoning": ..., KEY: {...}}`` envelopes.

    ``unwrap_keys`` names the keys whose value is the real answer (``("layout",)`` for the demo):
    an object holding one of them plus only reasoning keys is replaced by that value. Text with
    no JSON comes back unchanged with ``ok=False``, so the caller decides whether that is an error.
    """
    result = parse_json(text, lenient=True)
    if not result.ok:
        return NormalisedOutput(text=text, ok=False)
    steps: list[str] = []
    if result.found == "fence":
        steps.append("fence")
    elif result.found == "embedded":
        steps.append("extracted")
    value, reasoning = result.value, None
    if isinstance(value, dict):
        for key in unwrap_keys:
            if key in value and set(value) - {key} <= set(reasoning_keys):
                found = [value[k] for k in reasoning_keys if k in value]
                reasoning = found[0] if found else None
                value = value[key]
                steps.append(f"unwrapped:{key}")
                break
    if not steps:
        return NormalisedOutput(text=text.strip(), ok=True, value=value)
    return NormalisedOutput(
        text=json.dumps(value, ensure_ascii=False),
        ok=True,
        value=value,
        reasoning=reasoning,
        steps=tuple(steps),
    )
