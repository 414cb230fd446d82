"""``tuneloop dataset validate``: every problem of a dataset file, each under a stable code.

The OpenAI checks are those of OpenAI's chat fine-tuning data-preparation guide, under the same
names (``data_type``, ``missing_messages_list``, ``message_missing_key``,
``message_unrecognized_key``, ``unrecognized_role``, ``missing_content``,
``example_missing_assistant_message``). Beside them: ``json_parse`` (with the column),
``invalid_utf8``, ``blank_line``, ``mixed_formats``, ``unknown_format``, each other format's
``missing_field``/``field_type``, Together's ``together_first_role`` and ``together_alternation``,
``empty_content``, ``over_length``, ``invalid_assistant_json`` (when answers must be JSON) and
``schema`` (when a JSON schema is given). Warnings (``missing_system_message``,
``last_message_not_assistant``, ``skipped_file``) do not fail a file unless ``strict``.

Messages name the place and the rule, never the user's text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.curate.tokens import TokenCounter
from tuneloop.errors import InputError
from tuneloop.formats import (
    CrafterTemplate,
    Entry,
    Finding,
    MixedFormatsError,
    Record,
    data_files,
    iter_entries,
    type_name,
)
from tuneloop.jsontext import parse_json

OPENAI_MESSAGE_KEYS = (
    "role",
    "content",
    "name",
    "function_call",
    "tool_calls",
    "tool_call_id",
    "weight",
    "refusal",
)
OPENAI_ROLES = ("system", "user", "assistant", "function", "tool", "developer")
# Context length of a training example for hosted fine-tuning, by model (OpenAI's fine-tuning
# guide); local models use the configured train.max_length instead.
CONTEXT_TOKENS = {
    "gpt-4.1": 65_536,
    "gpt-4.1-mini": 65_536,
    "gpt-4.1-nano": 65_536,
    "gpt-4o": 65_536,
    "gpt-4o-mini": 65_536,
    "gpt-3.5-turbo": 16_385,
}
DEFAULT_MODEL = "gpt-4o-mini"
# A role is echoed in a message only when it looks like a role name, never free text.
ROLE_LIKE = re.compile(r"^[A-Za-z_]{1,16}$")


@dataclass
class ValidateOptions:
    """What to check beyond the format's own rules."""

    fmt: str | None = None
    expect_json: bool = False
    schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    model: str = DEFAULT_MODEL
    tokenizer: Any = None
    template: CrafterTemplate = field(default_factory=CrafterTemplate)


@dataclass
class ValidationReport:
    """Every finding of a file or folder, and how many entries were read in which format."""

    path: str
    entries: int = 0
    findings: list[Finding] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)
    bad_entries: int = 0
    token_method: str = ""

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")

    def ok(self, *, strict: bool = False) -> bool:
        if self.errors or (strict and self.warnings):
            return False
        return self.entries > 0

    def summary(self) -> str:
        if self.entries == 0:
            return f"{self.path}: no examples"
        kinds = ", ".join(f"{name} {count}" for name, count in sorted(self.formats.items()))
        return (
            f"{self.path}: {self.entries - self.bad_entries}/{self.entries} examples valid "
            f"({kinds or 'no format recognised'}); {self.errors} errors, {self.warnings} warnings"
        )

    def as_dict(self, *, strict: bool = False) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok(strict=strict),
            "entries": self.entries,
            "valid": self.entries - self.bad_entries,
            "errors": self.errors,
            "warnings": self.warnings,
            "formats": dict(sorted(self.formats.items())),
            "token_method": self.token_method,
            "findings": [f.as_dict() for f in self.findings],
        }


PROGRESS_EVERY = 1000


def count_lines(path: str | Path) -> int | None:
    """The lines of the JSONL files under ``path`` (a progress bar's total), or None when any
    file is of another kind (its entry count is unknown until read)."""
    total = 0
    for source in data_files(Path(path)):
        if not source.is_file() or source.suffix.lower() != ".jsonl":
            return None
        with source.open("rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total


def validate_path(
    path: str | Path,
    options: ValidateOptions | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Check every entry of a file or folder; never raises for a bad entry, only for a bad path.

    ``progress`` is called with the number of entries checked so far, every thousand.
    """
    options = options or ValidateOptions()
    path = Path(path)
    counter = TokenCounter(options.tokenizer, model=options.model)
    limit = options.max_tokens or CONTEXT_TOKENS.get(options.model)
    report = ValidationReport(str(path), token_method=counter.method)
    for source in data_files(path):
        try:
            for entry in iter_entries(source, fmt=options.fmt, template=options.template):
                findings = check_entry(entry, options, counter, limit)
                report.entries += 1
                if progress is not None and report.entries % PROGRESS_EVERY == 0:
                    progress(report.entries)
                if entry.format:
                    report.formats[entry.format] += 1
                if any(f.severity == "error" for f in findings):
                    report.bad_entries += 1
                report.findings.extend(findings)
        except MixedFormatsError as exc:
            report.findings.append(Finding(str(source), 1, "mixed_formats", str(exc)))
        except InputError as exc:
            report.findings.append(Finding(str(source), 1, "unreadable", str(exc)))
    if progress is not None:
        progress(report.entries)
    return report


def check_entry(
    entry: Entry, options: ValidateOptions, counter: TokenCounter, limit: int | None
) -> list[Finding]:
    """The findings of one entry: format rules first, then content rules on its record."""
    found: list[tuple[str, str, str]] = []  # (code, message, severity)
    if entry.format in ("openai", "together") and entry.value is not None:
        found += [(c, m, "error") for c, m in openai_checks(entry.value)]
        if entry.format == "together" and not found:
            found += [(c, m, "error") for c, m in together_checks(entry.value["messages"])]
        if entry.problem is not None and not found:
            return [entry.problem]
    elif entry.problem is not None:
        return [entry.problem]
    record = entry.record
    if record is not None and not any(sev == "error" for _, _, sev in found):
        found += record_checks(record, entry.format, options, counter, limit)
    return [Finding(entry.path, entry.line, code, message, sev) for code, message, sev in found]


def openai_checks(value: Any) -> list[tuple[str, str]]:
    """The checks of OpenAI's chat fine-tuning data-preparation guide, one code each."""
    if not isinstance(value, dict):
        return [("data_type", f"an example must be a JSON object, not {type_name(value)}")]
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        return [("missing_messages_list", "'messages' must be a non-empty list")]
    problems: list[tuple[str, str]] = []
    tools = value.get("tools")
    if tools is not None and not isinstance(tools, list):
        problems.append(("field_type", f"'tools' must be a list, not {type_name(tools)}"))
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append(("data_type", f"{where} must be an object, not {type_name(message)}"))
            continue
        missing = [key for key in ("role", "content") if key not in message]
        if "content" in missing and ("tool_calls" in message or "function_call" in message):
            missing.remove("content")
        if missing:
            problems.append(("message_missing_key", f"{where}: missing {', '.join(missing)}"))
        unknown = sorted(str(key) for key in message if key not in OPENAI_MESSAGE_KEYS)
        if unknown:
            problems.append(
                ("message_unrecognized_key", f"{where}: unknown key(s) {', '.join(unknown)}")
            )
        role = message.get("role")
        if "role" in message and role not in OPENAI_ROLES:
            shown = repr(role) if isinstance(role, str) and ROLE_LIKE.match(role) else "given"
            problems.append(
                (
                    "unrecognized_role",
                    f"{where}: role {shown} is not one of {', '.join(OPENAI_ROLES)}",
                )
            )
        content = message.get("content")
        has_call = bool(message.get("tool_calls") or message.get("function_call"))
        if "content" in message and not has_call and not _is_content(content):
            problems.append(
                ("missing_content", f"{where}: content must be text, not {type_name(content)}")
            )
        weight = message.get("weight")
        if "weight" in message and (weight not in (0, 1) or isinstance(weight, bool)):
            problems.append(("field_type", f"{where}: weight must be 0 or 1"))
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append(("example_missing_assistant_message", "no assistant message"))
    return problems


def _is_content(content: Any) -> bool:
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(isinstance(part, dict) for part in content)


def together_checks(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Together's conversational rules: starts with system or user; user/assistant alternate."""
    problems: list[tuple[str, str]] = []
    roles = [m.get("role") for m in messages]
    if roles[0] not in ("system", "user"):
        problems.append(("together_first_role", "the first message must be system or user"))
    turns = [role for role in roles if role != "system"]
    for index in range(1, len(turns)):
        if turns[index] == turns[index - 1] and turns[index] in ("user", "assistant"):
            problems.append(
                (
                    "together_alternation",
                    f"two {turns[index]} messages in a row; user and assistant must alternate",
                )
            )
            break
    if "system" in roles[1:]:
        problems.append(("together_first_role", "a system message is allowed only first"))
    return problems


def record_checks(
    record: Record,
    fmt: str | None,
    options: ValidateOptions,
    counter: TokenCounter,
    limit: int | None,
) -> list[tuple[str, str, str]]:
    """Content rules every format shares, on the record it was read into."""
    found: list[tuple[str, str, str]] = []
    if record.kind == "text":
        if not (record.text or "").strip():
            found.append(("empty_content", "'text' is empty", "error"))
        return found
    turns = list(record.messages) + list(record.chosen or []) + list(record.rejected or [])
    for index, message in enumerate(turns):
        content = message.get("content")
        role = message.get("role")
        if isinstance(content, str) and not content.strip() and role in ("user", "assistant"):
            if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
                continue
            found.append(
                ("empty_content", f"message {index + 1} ({role}) is empty or whitespace", "error")
            )
    if record.kind == "preference":
        found += _preference_checks(record)
    else:
        roles = [m.get("role") for m in record.messages]
        if fmt not in ("openai", "together") and "assistant" not in roles:
            found.append(("example_missing_assistant_message", "no assistant message", "error"))
        if "user" not in roles and fmt != "text":
            found.append(("missing_user_message", "no user message", "error"))
        if roles and roles[-1] != "assistant" and "assistant" in roles:
            found.append(
                (
                    "last_message_not_assistant",
                    "nothing after the last assistant message is trained on",
                    "warning",
                )
            )
        if roles and "system" not in roles:
            found.append(("missing_system_message", "no system message", "warning"))
    if limit is not None:
        tokens = counter.count_example(record.messages + list(record.chosen or []))
        if tokens > limit:
            target = "the limit" if options.max_tokens else options.model
            found.append(
                (
                    "over_length",
                    f"{tokens} tokens ({counter.method}) exceed the "
                    f"{limit}-token context of {target}",
                    "error",
                )
            )
    wants_json = (
        options.expect_json
        or options.schema is not None
        or (str(record.metadata.get("response_format", "")).lower() in ("json", "json_object"))
    )
    if wants_json:
        found += _json_checks(record, options.schema)
    return found


def _preference_checks(record: Record) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for name, turns in (("preferred", record.chosen), ("non-preferred", record.rejected)):
        if not turns or len(turns) != 1 or turns[0].get("role") != "assistant":
            found.append(
                (
                    "preference_output",
                    f"the {name} output must be exactly one assistant message",
                    "error",
                )
            )
    if not record.messages:
        found.append(("missing_messages_list", "the preference input has no messages", "error"))
    elif record.messages[-1].get("role") != "user":
        found.append(("preference_input", "the input must end with a user message", "error"))
    if record.chosen and record.rejected and record.chosen == record.rejected:
        found.append(
            ("preference_identical", "preferred and non-preferred outputs are the same", "warning")
        )
    return found


def _json_checks(record: Record, schema: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    turns = list(record.messages) + list(record.chosen or [])
    for index, message in enumerate(turns):
        if message.get("role") != "assistant" or not isinstance(message.get("content"), str):
            continue
        parsed = parse_json(message["content"])
        if not parsed.ok:
            found.append(
                (
                    "invalid_assistant_json",
                    f"message {index + 1} (assistant) is not valid JSON",
                    "error",
                )
            )
        elif schema is not None:
            found += [
                ("schema", f"message {index + 1}: {problem}", "error")
                for problem in schema_problems(parsed.value, schema)
            ]
    return found


def schema_problems(value: Any, schema: dict[str, Any], limit: int = 3) -> list[str]:
    """Where and which rule a value breaks (the schema's words, never the value's)."""
    try:
        import jsonschema
    except ImportError:
        raise InputError("--schema needs jsonschema (pip install jsonschema)") from None
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))[:limit]:
        where = "/" + "/".join(str(part) for part in error.absolute_path)
        rule = error.validator
        expected = error.validator_value
        shown = repr(expected) if len(repr(expected)) <= 60 else f"{repr(expected)[:57]}..."
        problems.append(f"at {where}: breaks {rule!s} {shown}")
    return problems


def load_schema(path: Path) -> dict[str, Any]:
    """A JSON schema file, checked to be one, or InputError naming the file."""
    import json

    try:
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise InputError(f"schema {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read schema {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"schema {path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    try:
        import jsonschema

        jsonschema.validators.validator_for(schema).check_schema(schema)
    except ImportError:
        raise InputError("--schema needs jsonschema (pip install jsonschema)") from None
    except jsonschema.SchemaError as exc:
        raise InputError(f"schema {path} is not a valid JSON schema: {exc.message}") from None
    if not isinstance(schema, dict):
        raise InputError(f"schema {path} must be a JSON object")
    return schema
