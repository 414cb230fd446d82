"""``dataset validate``: one code per rule, FILE:LINE output, exit codes, JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.curate import ValidateOptions, validate_path

USER = {"role": "user", "content": "Design a settings screen"}
ANSWER = {"role": "assistant", "content": '{"type": "FRAME"}'}
SYSTEM = {"role": "system", "content": "Answer in JSON."}
GOOD = {"messages": [SYSTEM, USER, ANSWER]}


def codes(tmp_path: Path, rows: list[Any], **options: Any) -> list[tuple[int, str]]:
    path = tmp_path / "data.jsonl"
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    )
    report = validate_path(path, ValidateOptions(**options))
    return [(f.line, f.code) for f in report.findings if f.severity == "error"]


@pytest.mark.parametrize(
    ("row", "code"),
    [
        ([1, 2], "data_type"),
        ({"messages": "hi"}, "missing_messages_list"),
        ({"messages": [{"role": "user"}, ANSWER]}, "message_missing_key"),
        ({"messages": [{**USER, "mood": "x"}, ANSWER]}, "message_unrecognized_key"),
        ({"messages": [{"role": "bot", "content": "x"}, ANSWER]}, "unrecognized_role"),
        ({"messages": [{"role": "user", "content": 3}, ANSWER]}, "missing_content"),
        ({"messages": [SYSTEM, USER]}, "example_missing_assistant_message"),
        ({"messages": [USER, {"role": "assistant", "content": "  "}]}, "empty_content"),
        ({"messages": [USER, {**ANSWER, "weight": 2}]}, "field_type"),
        ('{"messages": [', "json_parse"),
    ],
)
def test_openai_guide_checks_have_their_codes(tmp_path: Path, row: Any, code: str) -> None:
    # A good line first, so the file is detected as OpenAI chat.
    found = codes(tmp_path, [GOOD, row])
    assert (2, code) in found, found
    assert all(line == 2 for line, _ in found)


def test_together_rules_apply_when_asked(tmp_path: Path) -> None:
    rows = [GOOD, {"messages": [ANSWER, USER, ANSWER]}, {"messages": [USER, USER, ANSWER]}]
    assert codes(tmp_path, rows) == []
    assert codes(tmp_path, rows, fmt="together") == [
        (2, "together_first_role"),
        (3, "together_alternation"),
    ]


def test_other_formats_required_fields(tmp_path: Path) -> None:
    rows = [
        {"instruction": "a", "output": "b"},
        {"instruction": "a"},
        {"instruction": "a", "output": 3},
        {"instruction": " ", "output": "b"},
    ]
    assert codes(tmp_path, rows) == [(2, "missing_field"), (3, "field_type"), (4, "empty_content")]
    rows = [
        {
            "input": {"messages": [USER]},
            "preferred_output": [ANSWER],
            "non_preferred_output": [ANSWER, ANSWER],
        }
    ]
    assert codes(tmp_path, rows) == [(1, "preference_output")]


def test_json_answers_schema_and_length(tmp_path: Path) -> None:
    prose = {"messages": [USER, {"role": "assistant", "content": "Sure! Here it is."}]}
    assert codes(tmp_path, [GOOD, prose]) == []
    assert codes(tmp_path, [GOOD, prose], expect_json=True) == [(2, "invalid_assistant_json")]
    schema = {"type": "object", "required": ["type", "children"]}
    assert codes(tmp_path, [GOOD], schema=schema) == [(1, "schema")]
    long = {"messages": [USER, {"role": "assistant", "content": "word " * 400}]}
    assert codes(tmp_path, [GOOD, long], max_tokens=100) == [(2, "over_length")]


def test_invalid_utf8_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = json.dumps(GOOD).encode()
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + good.replace(b"Design", b"D\xffsign") + b"\n")
    report = validate_path(path)
    assert [(f.line, f.code) for f in report.findings if f.severity == "error"] == [
        (2, "invalid_utf8")
    ]


def test_cli_output_exit_codes_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "data.jsonl"
    no_system = {"messages": [USER, ANSWER]}
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(no_system) + "\n")
    result = runner.invoke(app, ["dataset", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}:2: missing_system_message" in result.output
    result = runner.invoke(app, ["dataset", "validate", str(path), "--strict"])
    assert result.exit_code == 1

    path.write_text(json.dumps(GOOD) + "\n{oops\n")
    result = runner.invoke(app, ["dataset", "validate", str(path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["findings"][0]["code"] == "json_parse" and report["findings"][0]["line"] == 2
    assert "column 2" in report["findings"][0]["message"]

    result = runner.invoke(app, ["dataset", "validate", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1 and "does not exist" in result.output
    schema = tmp_path / "schema.json"
    schema.write_text("{not json")
    result = runner.invoke(app, ["dataset", "validate", str(path), "--schema", str(schema)])
    assert result.exit_code != 0 and "not valid JSON" in str(result.exception or result.output)


def test_messages_never_include_the_users_text(tmp_path: Path) -> None:
    secret = "hunter2-private-text"
    rows = [
        GOOD,
        {"messages": [{"role": secret, "content": secret}]},
        {"messages": [USER, {"role": "assistant", "content": secret}]},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = validate_path(path, ValidateOptions(expect_json=True))
    assert report.errors >= 2
    assert all(secret not in str(finding) for finding in report.findings)
