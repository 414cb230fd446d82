"""`log import` of every dataset format: rows become interactions, twice imports once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tuneloop.capture.client import Tuneloop
from tuneloop.capture.importer import import_jsonl
from tuneloop.cli.app import app
from tuneloop.errors import InputError
from tuneloop.formats import Record, write_splits
from tuneloop.store import Interaction

ROWS: dict[str, dict[str, Any]] = {
    "alpaca": {"instruction": "Design a settings screen", "output": '{"type": "FRAME"}'},
    "sharegpt": {"conversations": [{"from": "human", "value": "Design a settings screen"},
                                   {"from": "gpt", "value": '{"type": "FRAME"}'}]},
    "prompt-completion": {"prompt": "Design a settings screen", "completion": '{"type": "FRAME"}'},
    "dpo": {"input": {"messages": [{"role": "user", "content": "Design a settings screen"}]},
            "preferred_output": [{"role": "assistant", "content": '{"type": "FRAME"}'}],
            "non_preferred_output": [{"role": "assistant", "content": "{}"}]},
}  # fmt: skip


def rows(client: Tuneloop) -> list[Interaction]:
    with client.store.session() as session:
        return list(session.scalars(select(Interaction).order_by(Interaction.created_at)))


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_each_format_imports_once(client: Tuneloop, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "data.jsonl"
    line = ROWS[fmt]
    other = json.loads(json.dumps(line).replace("settings", "profile"))
    path.write_text(json.dumps(line) + "\n" + json.dumps(other) + "\n")
    report = import_jsonl(client, path)
    assert (report.imported, report.skipped) == (2, 0), report.errors
    stored = rows(client)
    assert [r.messages[-1]["content"] for r in stored] == [
        "Design a settings screen",
        "Design a profile screen",
    ]
    assert all(r.source == "import" for r in stored)
    if fmt == "dpo":  # the model's answer, corrected to the preferred one
        assert stored[0].response == "{}" and stored[0].corrected_response == '{"type": "FRAME"}'
    else:
        assert stored[0].response == '{"type": "FRAME"}'
    again = import_jsonl(client, path)
    assert (again.imported, again.present) == (0, 2) and len(rows(client)) == 2


def test_parquet_and_datasets_folder(client: Tuneloop, tmp_path: Path) -> None:
    records = [
        Record(messages=[{"role": "user", "content": f"prompt {i}"},
                         {"role": "assistant", "content": f"answer {i}"}])
        for i in range(3)
    ]  # fmt: skip
    write_splits({"train": records[:2], "eval": records[2:]}, tmp_path / "pq", "parquet")
    write_splits({"train": records[:2], "eval": records[2:]}, tmp_path / "hf", "hf")
    assert import_jsonl(client, tmp_path / "pq" / "train.parquet").imported == 2
    report = import_jsonl(client, tmp_path / "hf")
    assert (report.imported, report.present) == (1, 2)  # same calls as the parquet file


def test_layout_folder_with_template_and_stray_file(client: Tuneloop, tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "dashboard_analytics_web_v1.json").write_text('{"type": "FRAME"}')
    (folder / "README.json").write_text("{}")
    report = import_jsonl(client, folder, task="crafter")
    assert (report.imported, report.skipped) == (1, 0)
    assert any("skipped_file" in error for error in report.errors)
    (stored,) = rows(client)
    assert stored.task == "crafter" and stored.response == '{"type": "FRAME"}'
    assert stored.metadata_["category"] == "dashboard" and stored.metadata_["platform"] == "web"
    assert "Design a web dashboard screen for analytics" in stored.messages[-1]["content"]


def test_mixed_file_is_refused_before_anything_is_stored(client: Tuneloop, tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    path.write_text(json.dumps(chat) + "\n" + json.dumps(ROWS["alpaca"]) + "\n")
    with pytest.raises(InputError, match="mixes formats: openai at line 1; alpaca at line 2"):
        import_jsonl(client, path)
    assert rows(client) == []


def test_cli_import_with_format(client: Tuneloop, tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([ROWS["alpaca"], {"instruction": "no output"}]))
    config_path = tmp_path / "tuneloop.toml"
    config_path.write_text(
        f'workspace = "{client.config.workspace}"\n[store]\nurl = "{client.config.store_url}"\n'
    )
    result = CliRunner().invoke(
        app, ["log", "import", str(path), "--format", "alpaca", "--config", str(config_path)]
    )
    assert result.exit_code == 1, result.output
    assert "1 imported, 1 skipped" in result.output
    assert "missing_field" in result.output
