"""One bad line costs only itself: per-line reasons that never quote the user's text, values the
store cannot keep refused up front, and exit codes that tell what happened."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from tuneloop.capture.client import Tuneloop
from tuneloop.capture.importer import import_jsonl
from tuneloop.cli.app import app
from tuneloop.config import Config
from tuneloop.errors import InputError
from tuneloop.store import Feedback, Interaction

SECRET = "Sensitive customer words"
PROMPT = [{"role": "user", "content": SECRET}]
ConfigFactory = Callable[..., Config]


def count(client: Tuneloop, model: type[Any] = Interaction) -> int:
    with client.store.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _jsonl(path: Path, lines: list[Any], prefix: bytes = b"") -> Path:
    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_bytes(prefix + body.encode("utf-8"))
    return path


def good(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"{SECRET} {i}"}], "response": f"ok {i}"}


FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()
# (line fields over a good line, what the reason says)
BAD_LINES: list[tuple[dict[str, Any], str]] = [
    (
        {"messages": [{"role": "user", "content": f"{SECRET}\u0000"}]},
        r"messages\[0\]\.content contains a NUL character",
    ),
    ({"response": f"{SECRET}\u0000"}, "response contains a NUL character"),
    ({"metadata": {"note": f"{SECRET}\u0000"}}, "metadata contains a NUL character"),
    ({"created_at": 1e20}, "created_at 1e\\+20 is out of range"),
    ({"created_at": -5}, "created_at .* is before 1970"),
    ({"created_at": "1900-01-01T00:00:00"}, "before 1970"),
    ({"created_at": FUTURE}, r"in the future .*capture\.max_future_s"),
    (
        {"messages": [{"role": "user", "content": {"text": SECRET}}]},
        r"messages\[0\]\.content must be text .*got an object with 1 key",
    ),
    (
        {"messages": [{"role": "user", "content": [{"text": SECRET}]}]},
        r"messages\[0\]\.content\[0\] must be a content part with a type",
    ),
    ({"messages": [{"role": SECRET, "content": "x"}]}, r"messages\[0\]\.role must be one of"),
    ({"response": ""}, "response is empty"),
    ({"response": "   \n"}, r"response is empty \(only whitespace\)"),
    ({"response": [{"type": "text", "text": SECRET}]}, "response must be text, got a list"),
    ({"response": "x" * 101}, r"response is 101 characters; at most 100 .*capture\.max_text_chars"),
    ({"metadata": {"blob": "y" * 200}}, r"metadata is \d+ characters as JSON"),
    (
        {"feedback": [{"kind": "correction", "edited": "  "}]},
        r"feedback\[0\]: .*edited (output )?is empty",
    ),
    (
        {"feedback": [{"kind": "thumbs_up", "score": 0.5}]},
        r"feedback\[0\]: feedback 'thumbs_up' takes no score",
    ),
    ({"feedback": [{"kind": SECRET}]}, r"feedback\[0\]: unknown feedback kind"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_LINES)
def test_a_bad_line_is_named_and_costs_only_itself(
    config_factory: ConfigFactory, tmp_path: Path, fields: dict[str, Any], reason: str
) -> None:
    path = _jsonl(tmp_path / "calls.jsonl", [good(1), {**good(2), **fields}, good(3)])
    with Tuneloop(config_factory(capture={"max_text_chars": 100})) as client:
        report = import_jsonl(client, path)
        assert (report.imported, report.skipped) == (2, 1), report.errors
        assert len(report.errors) == 1
        error = report.errors[0]
        assert error.startswith(f"{path}:2: ")
        assert SECRET not in error
        assert re.search(reason, error), error
        assert count(client) == 2


@pytest.mark.parametrize(
    ("fields", "reason"),
    [(fields, reason) for fields, reason in BAD_LINES if "feedback" not in fields],
)
def test_log_refuses_the_same_values(
    config_factory: ConfigFactory, fields: dict[str, Any], reason: str
) -> None:
    call = {**good(0), **fields}
    with Tuneloop(config_factory(capture={"max_text_chars": 100})) as client:
        with pytest.raises(InputError, match=reason) as caught:
            client.log(call.pop("messages"), call.pop("response"), **call)
        assert SECRET not in str(caught.value)
        assert count(client) == 0


def _refuse_on_insert(client: Tuneloop, response: str) -> None:
    """A database rule the checks in Python do not know about: the store refuses a row."""
    with client.store.engine.begin() as connection:
        if client.store.dialect == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON interactions "
                    f"WHEN NEW.response = '{response}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.response = '{response}' THEN RAISE EXCEPTION 'refused' "
                    "USING ERRCODE = '23514'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON interactions "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )


def test_a_line_the_store_refuses_does_not_roll_back_its_batch(
    client: Tuneloop, tmp_path: Path
) -> None:
    lines = [good(i) for i in range(6)]
    lines[3]["response"] = "poison"
    lines[3]["feedback"] = [{"kind": "thumbs_up"}]
    lines[4]["feedback"] = [{"kind": "thumbs_down"}]
    path = _jsonl(tmp_path / "calls.jsonl", lines)
    _refuse_on_insert(client, "poison")
    report = import_jsonl(client, path, batch_lines=4)
    assert (report.imported, report.skipped, report.feedback) == (5, 1, 1)
    assert report.errors[0].startswith(f"{path}:4: the store refused this line (")
    assert "poison" not in report.errors[0] and SECRET not in report.errors[0]
    assert count(client) == 5 and count(client, Feedback) == 1


def test_a_utf8_bom_is_accepted(client: Tuneloop, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bom.jsonl", [good(1), good(2)], prefix=codecs.BOM_UTF8)
    report = import_jsonl(client, path)
    assert (report.imported, report.skipped) == (2, 0)


def test_an_empty_correction_is_refused(client: Tuneloop) -> None:
    interaction_id = client.log(PROMPT, "answer")
    assert interaction_id is not None
    for blank in ("", " \n\t"):
        with pytest.raises(InputError, match="empty"):
            client.correct(interaction_id, blank)
        with pytest.raises(InputError, match="empty"):
            client.saved(interaction_id, edited=blank)
    row = client.get(interaction_id)
    assert row.reward is None and row.corrected_response is None and not row.feedback


def test_score_and_edit_only_where_the_kind_takes_them(client: Tuneloop) -> None:
    interaction_id = client.log(PROMPT, "answer")
    assert interaction_id is not None
    with pytest.raises(InputError, match="'thumbs_up' takes no score"):
        client.feedback(interaction_id, "thumbs_up", score=0.5)
    with pytest.raises(InputError, match="'thumbs_down' takes no edited text"):
        client.feedback(interaction_id, "thumbs_down", edited="better")
    with pytest.raises(InputError, match="in the future"), client.batch() as batch:
        batch.feedback(interaction_id, "thumbs_up", created_at=FUTURE)
    assert client.validated(interaction_id, 0.9) > 0


@pytest.fixture
def config_file(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "tuneloop.toml"
    path.write_text(f'workspace = "ws"\n[store]\nurl = "{store_url}"\n', encoding="utf-8")
    return path


def test_cli_exit_codes_tell_all_some_or_nothing(config_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()

    def run(name: str, lines: list[Any]) -> int:
        path = _jsonl(tmp_path / name, lines)
        result = runner.invoke(app, ["log", "import", str(path), "-c", str(config_file)])
        assert SECRET not in result.output
        return result.exit_code

    assert run("all.jsonl", [good(1), good(2)]) == 0
    assert run("all.jsonl", [good(1), good(2)]) == 0  # again: already there, nothing to do
    assert run("some.jsonl", [good(3), {**good(4), "response": ""}]) == 1
    assert run("none.jsonl", ["{oops", {**good(5), "response": f"{SECRET}\u0000"}]) == 2


def test_cli_score_on_a_kind_without_one_is_refused(config_file: Path) -> None:
    from tuneloop.config import load_config

    with Tuneloop(load_config(config_file)) as client:
        interaction_id = client.log(PROMPT, "answer")
    assert interaction_id is not None
    result = CliRunner().invoke(
        app, ["feedback", interaction_id, "thumbs_up", "--score", "0.7", "-c", str(config_file)]
    )
    assert isinstance(result.exception, InputError)
    assert "takes no score" in str(result.exception)
