"""Whether one curated example can be trained on: the gate ``select`` applies to every example.

Files are checked by ``checks.validate_path`` (every format, one code per rule); this is the
narrower question for a single chat example that curation is about to write.
"""

from __future__ import annotations

from typing import Any

from tuneloop.formats import type_name

ROLES = ("system", "user", "assistant", "tool")
NON_EMPTY_ROLES = ("user", "assistant")


def validate_example(example: Any) -> list[str]:
    """Every problem of one ``{"messages": [...]}`` example; an empty list means it is valid."""
    if not isinstance(example, dict):
        return [f"example must be a JSON object, not {type_name(example)}"]
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
            problems.append(f"{where} must be an object, not {type_name(message)}")
            roles.append(None)
            continue
        role = message.get("role")
        roles.append(role if isinstance(role, str) else None)
        if role not in ROLES:
            problems.append(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            problems.append(f"{where}: content must be a string, not {type_name(content)}")
        elif role in NON_EMPTY_ROLES and not content.strip():
            problems.append(f"{where}: {role} content is empty")
        if role == "system" and index > 0:
            problems.append(f"{where}: a system message is allowed only as the first message")
    if "user" not in roles:
        problems.append("no user message")
    if roles[-1] != "assistant":
        problems.append("the last message must be from the assistant (the training target)")
    return problems
