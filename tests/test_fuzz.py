"""Fuzzing the format readers, the validator and the redactor: random and truncated lines, wrong
types, huge values, bad encodings. The promise: a clear finding naming file and line (or one
InputError naming the file), never a traceback and never partial output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneloop.curate import ValidateOptions, validate_path
from tuneloop.curate.pii import Redactor
from tuneloop.errors import InputError
from tuneloop.formats import RECORD_FORMATS, iter_entries, log_line, write_splits
from tuneloop.formats.schemas import FormatProblem

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "prompt",
                    "completion",
                    "instruction",
                    "output",
                    "input",
                    "conversations",
                    "from",
                    "value",
                    "text",
                    "chosen",
                    "rejected",
                    "preferred_output",
                    "non_preferred_output",
                    "weight",
                    "tools",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
GOOD = json.dumps(
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{}"}]}
).encode()


def lines_strategy() -> st.SearchStrategy[list[bytes]]:
    line = st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.just(GOOD),
        st.just(GOOD[: len(GOOD) // 2]),  # truncated
        st.binary(max_size=60),  # random bytes, bad encodings
        st.just(b"\xef\xbb\xbf" + GOOD),
        st.just(json.dumps({"messages": [{"role": "user", "content": "x" * 20000}]}).encode()),
    )
    return st.lists(line, min_size=1, max_size=8)


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    return path


@FUZZ
@given(lines=lines_strategy(), fmt=st.sampled_from([None, *RECORD_FORMATS]))
def test_readers_never_crash(tmp_path: Path, lines: list[bytes], fmt: str | None) -> None:
    path = write(tmp_path / "fuzz.jsonl", lines)
    try:
        entries = list(iter_entries(path, fmt=fmt))
    except InputError as exc:  # a mixed file: one message naming the file
        assert str(path) in str(exc)
        return
    assert [e.line for e in entries] == list(range(1, len(entries) + 1))
    for entry in entries:
        assert entry.path == str(path)
        if entry.problem is not None:
            assert entry.problem.line == entry.line and entry.problem.code
        if entry.record is not None:
            try:
                log_line(entry.record)
            except FormatProblem as exc:
                assert exc.code


@FUZZ
@given(lines=lines_strategy(), strict=st.booleans())
def test_validator_reports_every_line_by_number(
    tmp_path: Path, lines: list[bytes], strict: bool
) -> None:
    path = write(tmp_path / "fuzz.jsonl", lines)
    report = validate_path(path, ValidateOptions(expect_json=True, max_tokens=1000))
    assert report.as_dict(strict=strict)["ok"] == report.ok(strict=strict)
    for finding in report.findings:
        assert finding.path == str(path) and finding.line >= 1 and finding.code
        assert str(finding).startswith(f"{path}:{finding.line}: {finding.code} ")


@FUZZ
@given(text=st.text(max_size=300))
def test_redactor_never_crashes_and_is_stable(text: str) -> None:
    redactor = Redactor()
    once, _ = redactor.redact_example(text)
    twice, counts = redactor.redact_example(once)
    assert isinstance(once, str)
    assert twice == once or counts  # re-redacting only ever finds what the first pass made


@FUZZ
@given(value=json_values)
def test_json_array_files_never_crash(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "fuzz.json"
    text = json.dumps(value, indent=1)
    for cut in (len(text), len(text) // 2):
        path.write_text(text[:cut])
        try:
            entries = list(iter_entries(path))
        except InputError as exc:
            assert str(path) in str(exc)
            continue
        assert all(entry.line >= 1 for entry in entries)


@FUZZ
@given(lines=lines_strategy())
def test_failed_export_leaves_nothing(tmp_path: Path, lines: list[bytes]) -> None:
    path = write(tmp_path / "fuzz.jsonl", lines)
    try:
        records = [e.record for e in iter_entries(path, fmt="openai") if e.record is not None]
    except InputError:
        return
    out = tmp_path / "out"
    try:
        write_splits({"train": records}, out, "alpaca", overwrite=True)
    except InputError:
        assert not out.exists() or out.is_dir()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.staging")]
