"""A folder of ``{category}_{scenario}_{platform}_{version}.json`` layout files, one answer each.

Each file is the assistant's answer (a UI layout in JSON); the user prompt is made from a template
filled with the parts of the name, which also become the example's metadata. A file whose name
does not fit is skipped with a warning, so one stray README never stops an import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tuneloop.formats.records import Finding, Item, Record

VERSION = re.compile(r"^v?\d+(?:\.\d+)*$")
PART = re.compile(r"^[A-Za-z0-9-]+$")
DEFAULT_SYSTEM = (
    "You generate UI layout JSON. Always respond with a single JSON object describing the "
    "layout tree, without explanations, markdown or comments."
)
DEFAULT_PROMPT = (
    "Design a {platform} {category} screen for {scenario}. Use a clean, production-ready layout "
    "with good hierarchy, spacing and realistic text. Return only the JSON layout object."
)
FIELDS = ("category", "scenario", "platform", "version")


@dataclass(frozen=True)
class CrafterTemplate:
    """How a layout file becomes a conversation: the system message and the user prompt."""

    prompt: str = DEFAULT_PROMPT
    system: str = DEFAULT_SYSTEM


def parse_name(path: Path) -> dict[str, str] | None:
    """``{"category", "scenario", "platform", "version"}`` from a file name, or None."""
    if path.suffix.lower() != ".json":
        return None
    parts = path.stem.split("_")
    if len(parts) < 4 or not VERSION.match(parts[-1]):
        return None
    if not all(PART.match(part) for part in parts):
        return None
    return {
        "category": parts[0],
        "scenario": "_".join(parts[1:-2]),
        "platform": parts[-2],
        "version": parts[-1],
    }


def is_crafter_folder(path: Path) -> bool:
    return path.is_dir() and any(parse_name(child) for child in path.glob("*.json"))


def crafter_prompt(template: CrafterTemplate, fields: dict[str, str]) -> str:
    words = {key: value.replace("-", " ") for key, value in fields.items()}
    return template.prompt.format(**words)


def read_layout_file(path: Path, template: CrafterTemplate) -> tuple[Item, Record | None]:
    """One layout file as an entry; a name that does not fit gives a warning and no record."""
    name = str(path)
    fields = parse_name(path)
    if fields is None:
        return Item(
            name,
            1,
            error=Finding(
                name,
                1,
                "skipped_file",
                "name does not match {category}_{scenario}_{platform}_{version}.json; skipped",
                severity="warning",
            ),
        ), None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return Item(name, 1, error=Finding(name, 1, "read_error", exc.strerror or str(exc))), None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Item(
            name,
            1,
            error=Finding(name, 1, "invalid_utf8", f"byte {exc.start + 1} is not UTF-8 text"),
        ), None
    if not text.strip():
        return Item(
            name, 1, error=Finding(name, 1, "empty_content", "the layout file is empty")
        ), None
    messages = []
    if template.system.strip():
        messages.append({"role": "system", "content": template.system})
    try:
        prompt = crafter_prompt(template, fields)
    except (KeyError, IndexError, ValueError) as exc:
        return Item(
            name,
            1,
            error=Finding(
                name,
                1,
                "template",
                f"the prompt template cannot be filled: {exc!r}; it may use "
                f"{', '.join('{' + f + '}' for f in FIELDS)}",
            ),
        ), None
    messages += [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": text.strip()},
    ]
    record = Record(messages=messages, metadata={**fields, "response_format": "json"})
    return Item(name, 1, value=record), record
