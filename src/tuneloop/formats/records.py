"""The one in-memory shape every dataset format is read into and written from.

A ``Record`` is a chat conversation (``messages``), a preference pair (prompt ``messages`` plus
``chosen``/``rejected`` assistant turns) or plain ``text``. Converting every format through it
means N readers and N writers instead of N² converters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


@dataclass
class Finding:
    """One problem found in a file: ``FILE:LINE: CODE message``; warnings do not fail a file."""

    path: str
    line: int
    code: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else " (warning)"
        return f"{self.path}:{self.line}: {self.code} {self.message}{tag}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "code": self.code,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass
class Record:
    """A format-neutral example; ``metadata`` keeps what a format carries beside the text."""

    messages: list[Message] = field(default_factory=list)
    chosen: list[Message] | None = None
    rejected: list[Message] | None = None
    tools: list[Any] | None = None
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.chosen is not None:
            return "preference"
        if self.text is not None:
            return "text"
        return "chat"

    @property
    def prompt(self) -> list[Message]:
        """The messages before the last assistant turn (a preference record's whole input)."""
        if self.kind == "preference" or not self.messages:
            return self.messages
        if self.messages[-1].get("role") == "assistant":
            return self.messages[:-1]
        return self.messages

    @property
    def response(self) -> str | None:
        """The last assistant message's text (the preferred one for a pair), if it is text."""
        turns = self.chosen if self.kind == "preference" else self.messages
        if turns and turns[-1].get("role") == "assistant":
            content = turns[-1].get("content")
            return content if isinstance(content, str) else None
        return None


@dataclass
class Item:
    """One entry of a file before conversion: its 1-based line (or row), value or read error."""

    path: str
    line: int
    value: Any = None
    error: Finding | None = None
    bom: bool = False
