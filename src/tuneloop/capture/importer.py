"""Import logged calls from a JSONL file: tuneloop's own lines or OpenAI fine-tuning lines.

A line is ``{"messages": [...], "response": "..."}`` or ``{"messages": [..., {"role":
"assistant", "content": "..."}]}`` (the last assistant message is the response), plus any
``log()`` field and an optional ``"feedback": [{"kind": ..., ...}]`` list. Keys tuneloop does not
know (``tools``, ...) are kept in the metadata. ``task`` and ``source`` arguments are defaults for
lines that do not set them.

Bad lines are reported with file and line number and skipped; good lines are written in batches,
each one transaction, so a crash leaves whole batches, never half a line's rows.

Each line is stored under an idempotency key (its ``id``, else a hash of the call and how many
equal lines came before it in the file), so importing a file again, or again after an
interrupted run, stores each line once: the result equals one clean import.
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from tuneloop.capture.records import (
    LOG_OPTIONS,
    call_key,
    feedback_value,
    nth_key,
    parse_time,
    prepare_log,
    short_name,
)
from tuneloop.capture.rewards import check_kind, prepare_value
from tuneloop.config import CaptureConfig
from tuneloop.errors import InputError, TuneloopError
from tuneloop.formats import CrafterTemplate, FormatProblem, file_format, iter_entries, log_line

if TYPE_CHECKING:
    from tuneloop.capture.client import Tuneloop

BATCH_LINES = 500
WARNING = "warning: "
STRICT_SHOWN = 5
MAX_ERRORS_KEPT = 1000
FEEDBACK_KEYS = ("kind", "value", "score", "edited", "comment", "created_at")


@dataclass
class ImportReport:
    """What an import did; ``errors`` are ``path:line: message`` strings."""

    path: Path
    imported: int = 0
    present: int = 0
    skipped: int = 0
    opted_out: int = 0
    feedback: int = 0
    errors: list[str] = field(default_factory=list)

    def skip(self, line: int, reason: str) -> None:
        """Count a bad line; the first ``MAX_ERRORS_KEPT`` reasons are kept."""
        self.skipped += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"{self.path}:{line}: {reason}")

    @property
    def stored(self) -> int:
        """Lines whose call is in the store now (imported by this run or an earlier one)."""
        return self.imported + self.present

    def summary(self) -> str:
        return (
            f"{self.path}: {self.imported} imported, {self.skipped} skipped (bad lines), "
            f"{self.present} already present, {self.opted_out} not stored (tenant opted "
            f"out), {self.feedback} feedback events"
        )


@dataclass
class _Line:
    number: int
    values: dict[str, Any]
    feedback: list[dict[str, Any]]


def import_jsonl(
    client: Tuneloop,
    path: str | Path,
    *,
    task: str | None = None,
    source: str = "import",
    batch_lines: int = BATCH_LINES,
    progress: Callable[[int], None] | None = None,
    fmt: str | None = None,
    template: CrafterTemplate | None = None,
    strict: bool = False,
) -> ImportReport:
    """Import ``path``; ``progress`` is called with the bytes (or entries) read so far.

    ``path`` may be any format ``tuneloop.formats`` reads (``fmt`` names it, else it is
    detected); tuneloop's own JSONL lines and OpenAI chat lines are read here directly.
    ``strict`` refuses the whole file, before storing anything, when any line is bad.
    """
    path = Path(path)
    report = ImportReport(path)
    defaults = {"task": task or client.config.task, "source": source}
    pending: list[_Line] = []
    seen: Counter[str] = Counter()  # call hash → equal lines so far
    curate = client.config.curate
    template = template or CrafterTemplate(
        curate.import_prompt_template, curate.import_system_prompt
    )
    if strict:
        _refuse_bad_lines(path, fmt, template, defaults, client.config.capture)
    for number, done, text, problem in _lines(path, fmt, template):
        if problem is not None and problem.startswith(WARNING):
            report.errors.append(f"{path}:{number}: {problem}")  # e.g. a stray file name
        elif problem is not None:
            report.skip(number, problem)
        elif text is not None:
            try:
                line = _parse_line(number, text, defaults, client.config.capture)
                if "idempotency_key" not in line.values:
                    digest = call_key(line.values)
                    line.values["idempotency_key"] = nth_key(digest, seen[digest])
                    seen[digest] += 1
                pending.append(line)
            except InputError as exc:
                report.skip(number, str(exc))
        if len(pending) >= batch_lines:
            _write(client, pending, report)
            pending = []
        if progress is not None:
            progress(done)
    if pending:
        _write(client, pending, report)
    return report


def _refuse_bad_lines(
    path: Path,
    fmt: str | None,
    template: CrafterTemplate,
    defaults: dict[str, Any],
    capture: CaptureConfig,
) -> None:
    """A dry run of the whole file: InputError naming the first bad lines, or nothing."""
    bad: list[str] = []
    total = 0
    for number, _, text, problem in _lines(path, fmt, template):
        if problem is None and text is not None:
            try:
                _parse_line(number, text, defaults, capture)
            except InputError as exc:
                problem = str(exc)
        if problem is not None and not problem.startswith(WARNING):
            total += 1
            if len(bad) < STRICT_SHOWN:
                bad.append(f"{path}:{number}: {problem}")
    if total:
        raise InputError(
            f"{total} bad line(s), nothing imported (--strict): "
            + "; ".join(bad)
            + ("; ..." if total > len(bad) else "")
        )


def _lines(
    path: Path, fmt: str | None, template: CrafterTemplate | None
) -> Iterator[tuple[int, int, str | None, str | None]]:
    """``(line, progress, text, problem)`` per entry: tuneloop/OpenAI JSONL line by line, any
    other format through ``tuneloop.formats`` as the equivalent tuneloop line."""
    if not path.exists():
        raise InputError(f"cannot read {path}: no such file or folder")
    native = path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson")
    if native and fmt is None:
        native = file_format(path) in (None, "openai")
    if native and fmt in (None, "openai"):
        yield from _jsonl_lines(path)
        return
    for count, entry in enumerate(iter_entries(path, fmt=fmt, template=template), start=1):
        where = "" if entry.path == str(path) else f"{Path(entry.path).name}: "
        if entry.problem is not None:
            warning = WARNING if entry.problem.severity == "warning" else ""
            message = f"{entry.problem.code} {entry.problem.message}"
            yield entry.line, count, None, f"{warning}{where}{message}"
        elif entry.record is not None:
            try:
                yield entry.line, count, json.dumps(log_line(entry.record)), None
            except FormatProblem as exc:
                yield entry.line, count, None, f"{where}{exc.code} {exc.message}"


def _jsonl_lines(path: Path) -> Iterator[tuple[int, int, str | None, str | None]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        done = 0
        for number, raw in enumerate(handle, start=1):
            done += len(raw)
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]  # written by some Windows editors
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, done, None, "not UTF-8 text"
                continue
            yield number, done, text if text.strip() else None, None


def _write(client: Tuneloop, lines: list[_Line], report: ImportReport) -> None:
    """Store lines in one transaction; when the store refuses it, store them one by one, so a
    line the store cannot take costs only itself."""
    try:
        counts = _store(client, lines)
    except _LineError as exc:  # the configuration or the store failed, not a line: stop
        raise type(exc.error)(
            f"{report.path}:{exc.line}: {exc.error} (lines {lines[0].number}-{lines[-1].number} "
            f"were rolled back; {report.imported} earlier lines are imported; run the import "
            "again to finish once fixed)"
        ) from exc.error
    except (InputError, DBAPIError) as exc:
        if len(lines) == 1:
            reason = (
                str(exc)
                if isinstance(exc, InputError)
                else (f"the store refused this line ({_db_reason(exc)})")
            )
            report.skip(lines[0].number, reason)
            return
        for line in lines:
            _write(client, [line], report)
        return
    report.imported += counts[0]
    report.present += counts[1]
    report.opted_out += counts[2]
    report.feedback += counts[3]


def _store(client: Tuneloop, lines: list[_Line]) -> tuple[int, int, int, int]:
    """One transaction: (imported, already present, opted out, feedback events)."""
    imported = present = opted_out = feedback = 0
    current = lines[0]
    try:
        with client.batch() as batch:
            batch.prefetch([line.values for line in lines])
            for current in lines:
                interaction_id, created = batch.put(current.values)
                if interaction_id is None:
                    opted_out += 1
                    continue
                if not created:  # imported before, with its feedback
                    present += 1
                    continue
                imported += 1
                for event in current.feedback:
                    batch.feedback(interaction_id, **event)
                    feedback += 1
    except (InputError, DBAPIError):
        raise
    except TuneloopError as exc:
        raise _LineError(current.number, exc) from exc
    return imported, present, opted_out, feedback


class _LineError(TuneloopError):
    """An error that is not the line's fault (configuration, store) met while storing it."""

    def __init__(self, line: int, error: TuneloopError) -> None:
        super().__init__(str(error))
        self.line = line
        self.error = error


def _db_reason(exc: DBAPIError) -> str:
    """The database's error class and code, never its message (it quotes the row's values)."""
    code = getattr(exc.orig, "sqlstate", None)
    return type(exc.orig).__name__ + (f", SQLSTATE {code}" if code else "")


def _parse_line(number: int, text: str, defaults: dict[str, Any], capture: CaptureConfig) -> _Line:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise InputError("JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise InputError(f"a line must be a JSON object, got {type(record).__name__}")
    messages = record.pop("messages", None)
    events = record.pop("feedback", None) or []
    if "response" in record:
        response = record.pop("response")
    elif (
        isinstance(messages, list)
        and messages
        and isinstance(messages[-1], dict)
        and messages[-1].get("role") == "assistant"
    ):
        response = messages[-1].get("content")
        messages = messages[:-1]
    else:
        raise InputError('no response: give "response" or end "messages" with an assistant message')
    options = {key: record.pop(key) for key in LOG_OPTIONS if key in record}
    if record:  # keys tuneloop does not know: keep them with the call
        metadata = options.get("metadata") or {}
        if isinstance(metadata, dict):
            options["metadata"] = {**record, **metadata}
    for key, value in defaults.items():
        if options.get(key) is None:
            options[key] = value
    values = prepare_log(messages, response, capture, **options)
    return _Line(number, values, _check_feedback(events, values["response"], capture))


def _check_feedback(events: Any, response: str, capture: CaptureConfig) -> list[dict[str, Any]]:
    """Validate feedback entries now, so a bad one skips its line instead of failing a batch."""
    if not isinstance(events, list):
        raise InputError("feedback must be a list of {kind, ...} objects")
    checked = []
    for index, event in enumerate(events):
        where = f"feedback[{index}]"
        if not isinstance(event, dict) or "kind" not in event:
            raise InputError(f"{where} must be an object with a kind")
        unknown = sorted(set(event) - set(FEEDBACK_KEYS))
        if unknown:
            raise InputError(
                f"{where}: unknown key(s) {', '.join(map(short_name, unknown))}; "
                f"allowed: {', '.join(FEEDBACK_KEYS)}"
            )
        try:
            kind = check_kind(event["kind"])
            value = feedback_value(
                kind,
                event.get("value"),
                score=event.get("score"),
                edited=event.get("edited"),
                comment=event.get("comment"),
                capture=capture,
            )
            prepare_value(kind, value, response)
            if event.get("created_at") is not None:
                parse_time(event["created_at"], f"{where}.created_at", capture.max_future_s)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        checked.append(
            {key: value for key, value in event.items() if key != "kind"} | {"kind": kind}
        )
    return checked
