"""Checks that an example is in OpenAI/Together chat fine-tuning format before anyone uploads it.

Hosted fine-tuning jobs reject a whole file for one bad line, often after a wait; checking here
gives every problem at once, with line numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.errors import InputError

ROLES = ("system", "user", "assistant", "tool")
NON_EMPTY_ROLES = ("user", "assistant")


def validate_example(example: Any) -> list[str]:
    """Every problem of one ``{"messages": [...]}`` example; an empty list means it is valid."""
    if not isinstance(example, dict):
        return [f"example must be a JSON object, not {_type_name(example)}"]
    if "messages" not in example:
        return ["missing key 'messages'"]
    messages = example["messages"]
    if not isinstance(messages, list) or not messages:
        return ["'messages' must be a non-empty list"]
    problems: list[str] = []
    roles: list[str | None] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append(f"{where} must be an object, not {_type_name(message)}")
            roles.append(None)
            continue
        role = message.get("role")
        roles.append(role if isinstance(role, str) else None)
        if role not in ROLES:
            problems.append(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            problems.append(f"{where}: content must be a string, not {_type_name(content)}")
        elif role in NON_EMPTY_ROLES and not content.strip():
            problems.append(f"{where}: {role} content is empty")
        if role == "system" and index > 0:
            problems.append(f"{where}: a system message is allowed only as the first message")
    if "user" not in roles:
        problems.append("no user message")
    if roles[-1] != "assistant":
        problems.append("the last message must be from the assistant (the training target)")
    return problems


@dataclass(frozen=True)
class LineProblems:
    """The problems of one line of a JSONL file (1-based line number, as editors show them)."""

    line: int
    problems: list[str]


@dataclass
class ValidationReport:
    """What ``validate_jsonl`` found: how many examples, and each bad line's problems."""

    path: Path
    examples: int = 0
    invalid: list[LineProblems] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.invalid and self.examples > 0

    @property
    def valid(self) -> int:
        return self.examples - len(self.invalid)

    def summary(self) -> str:
        if self.examples == 0:
            return f"{self.path}: no examples"
        return f"{self.path}: {self.valid}/{self.examples} examples valid"


def validate_jsonl(path: str | Path) -> ValidationReport:
    """Validate every line of a JSONL file; blank lines count as problems (uploads reject them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    report = ValidationReport(path)
    for number, line in enumerate(text.splitlines(), start=1):
        report.examples += 1
        if not line.strip():
            report.invalid.append(LineProblems(number, ["blank line"]))
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as exc:
            report.invalid.append(
                LineProblems(number, [f"not valid JSON: {exc.msg} (column {exc.colno})"])
            )
            continue
        problems = validate_example(example)
        if problems:
            report.invalid.append(LineProblems(number, problems))
    return report


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
