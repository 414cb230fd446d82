"""Reading JSON out of model answers, which often wrap it in a Markdown fence.

Capture uses this for ``valid_json``; evaluate reuses it so "valid JSON" means the same thing in
both stages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)\r?\n?```\s*$", re.DOTALL)
_ANY_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_MISSING = object()


def strip_fence(text: str) -> tuple[str, str | None]:
    """The text inside a whole-answer ```lang fence and the fence's language (None: no fence)."""
    stripped = text.strip()
    match = _FENCE.match(stripped)
    if match is None:
        return stripped, None
    return match.group(2).strip(), match.group(1).lower()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _MISSING


def _parse(text: str, lenient: bool) -> Any:
    body, _ = strip_fence(text)
    value = _loads(body)
    if value is not _MISSING or not lenient:
        return value
    # Lenient: the first fenced block anywhere, then the first {...} or [...] that decodes.
    for match in _ANY_FENCE.finditer(text):
        value = _loads(match.group(2).strip())
        if value is not _MISSING:
            return value
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, index)[0]
            except (json.JSONDecodeError, RecursionError):
                continue
    return _MISSING


def extract_json(text: str, *, lenient: bool = False) -> Any | None:
    """The JSON value of an answer (fences stripped), or None when it does not parse.

    Strict by default: the whole answer must be JSON, as a program consuming it would need.
    ``lenient=True`` also finds JSON embedded in prose. A literal ``null`` answer also gives
    None; use :func:`is_valid_json` when that difference matters.
    """
    value = _parse(text, lenient)
    return None if value is _MISSING else value


def is_valid_json(text: str, *, lenient: bool = False) -> bool:
    """Whether the answer (fences stripped) parses as JSON."""
    return _parse(text, lenient) is not _MISSING


def expects_json(text: str, metadata: Mapping[str, Any] | None = None) -> bool:
    """Whether an answer is meant to be JSON: it looks like JSON, or the caller said so.

    Looks like JSON: it starts with ``{`` or ``[``, or is a fence tagged ``json`` or a fence whose
    body starts with ``{``/``[``. The caller says so with ``metadata["response_format"] == "json"``.
    """
    if metadata and str(metadata.get("response_format", "")).lower() in ("json", "json_object"):
        return True
    body, language = strip_fence(text)
    if language == "json" or text.lstrip()[:7].lower() == "```json":  # also an unclosed fence
        return True
    return body.startswith(("{", "["))
