"""Dataset formats: detection, reading every format and container, writing every export format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneloop.errors import InputError
from tuneloop.formats import (
    CrafterTemplate,
    MixedFormatsError,
    Record,
    detect,
    iter_entries,
    parse_name,
    write_splits,
)

USER = {"role": "user", "content": "Design a settings screen"}
ANSWER = {"role": "assistant", "content": '{"type": "FRAME"}'}
SYSTEM = {"role": "system", "content": "Answer in JSON."}

LINES: dict[str, dict[str, Any]] = {
    "openai": {
        "messages": [
            SYSTEM,
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {**ANSWER, "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    },
    "dpo": {
        "input": {"messages": [USER]},
        "preferred_output": [ANSWER],
        "non_preferred_output": [{"role": "assistant", "content": "{}"}],
    },
    "preference": {
        "prompt": [USER],
        "chosen": [ANSWER],
        "rejected": [{"role": "assistant", "content": "{}"}],
    },
    "prompt-completion": {"prompt": "Design a settings screen", "completion": '{"type": "FRAME"}'},
    "text": {"text": "Some pretraining text."},
    "alpaca": {
        "instruction": "Design a settings screen",
        "input": "dark mode",
        "output": '{"type": "FRAME"}',
    },
    "sharegpt": {
        "conversations": [
            {"from": "system", "value": "Answer in JSON."},
            {"from": "human", "value": "Design a settings screen"},
            {"from": "gpt", "value": '{"type": "FRAME"}'},
        ]
    },
}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", sorted(LINES))
def test_each_format_is_detected_and_read(tmp_path: Path, fmt: str) -> None:
    assert detect(LINES[fmt]) == fmt
    path = write_jsonl(tmp_path / "data.jsonl", [LINES[fmt], LINES[fmt]])
    entries = list(iter_entries(path))
    assert [(e.line, e.format, e.problem) for e in entries] == [(1, fmt, None), (2, fmt, None)]
    record = entries[0].record
    assert record is not None
    if fmt == "text":
        assert record.kind == "text" and record.text == "Some pretraining text."
    elif fmt in ("dpo", "preference"):
        assert record.kind == "preference" and record.response == '{"type": "FRAME"}'
        assert record.messages == [USER]
    else:
        assert record.kind == "chat" and record.response == '{"type": "FRAME"}'
        assert any(m["role"] == "user" for m in record.messages)


def test_openai_keeps_tool_calls_tools_and_weight(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [LINES["openai"]])
    record = next(iter_entries(path)).record
    assert record is not None and record.tools == LINES["openai"]["tools"]
    assert record.messages[2]["tool_calls"][0]["id"] == "c1"
    assert record.messages[-1]["weight"] == 1


def test_alpaca_json_array_reports_item_lines(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n\n  {"instruction": "c",\n   "output": "d"},\n'
        '  {"instruction": "e"}\n]\n',
        encoding="utf-8",
    )
    entries = list(iter_entries(path))
    assert [e.line for e in entries] == [2, 4, 6]
    assert entries[1].record is not None and entries[1].record.messages[0]["content"] == "c"
    assert entries[2].problem is not None and entries[2].problem.code == "missing_field"


def test_broken_json_array_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": \n]', "utf-8")
    entries = list(iter_entries(path))
    assert entries[-1].problem is not None and entries[-1].problem.code == "json_parse"
    assert entries[-1].line == 4 and "column" in entries[-1].problem.message


def test_bom_is_accepted_and_bad_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    line = json.dumps(LINES["prompt-completion"]).encode()
    path.write_bytes(b"\xef\xbb\xbf" + line + b"\n" + b'{"prompt": "\xff", "completion": "x"}\n')
    entries = list(iter_entries(path))
    assert entries[0].problem is None and entries[0].bom
    assert entries[1].problem is not None and entries[1].problem.code == "invalid_utf8"


def test_mixed_file_is_refused_naming_lines(tmp_path: Path) -> None:
    rows = [LINES["openai"], LINES["openai"], LINES["alpaca"], LINES["openai"], LINES["alpaca"]]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    with pytest.raises(MixedFormatsError) as info:
        list(iter_entries(path))
    message = str(info.value)
    assert "openai at lines 1-2, 4" in message and "alpaca at lines 3, 5" in message
    # Naming the format reads every line as it, reporting the misfits line by line.
    entries = list(iter_entries(path, fmt="alpaca"))
    assert [e.problem is None for e in entries] == [False, False, True, False, True]


def test_unknown_format_name_and_file_type(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [LINES["text"]])
    with pytest.raises(InputError, match="unknown format 'csv'"):
        list(iter_entries(path, fmt="csv"))
    other = tmp_path / "a.csv"
    other.write_text("a,b\n")
    with pytest.raises(InputError, match="unknown file type .csv"):
        list(iter_entries(other))
    with pytest.raises(InputError, match="does not exist"):
        list(iter_entries(tmp_path / "missing.jsonl"))


def test_parquet_and_hf_folders_round_trip(tmp_path: Path) -> None:
    records = [Record(messages=[USER, ANSWER]), Record(messages=[SYSTEM, USER, ANSWER])]
    written = write_splits({"train": records, "eval": records[:1]}, tmp_path / "pq", "parquet")
    entries = list(iter_entries(written["train"]))
    assert [e.record.messages if e.record else None for e in entries] == [
        [USER, ANSWER],
        [SYSTEM, USER, ANSWER],
    ]
    write_splits({"train": records, "eval": records[:1]}, tmp_path / "hf", "hf")
    entries = list(iter_entries(tmp_path / "hf"))
    assert [(Path(e.path).name, e.line) for e in entries] == [
        ("train", 1),
        ("train", 2),
        ("eval", 1),
    ]
    assert all(e.format == "openai" and e.problem is None for e in entries)


def test_crafter_folder(tmp_path: Path) -> None:
    folder = tmp_path / "layouts"
    folder.mkdir()
    (folder / "dashboard_sales-analytics_web_v1.json").write_text('{"type": "FRAME"}')
    (folder / "settings_dark_mode_mobile_v2.json").write_text('{"type": "FRAME", "x": 1}')
    (folder / "notes.json").write_text("{}")
    assert parse_name(folder / "settings_dark_mode_mobile_v2.json") == {
        "category": "settings",
        "scenario": "dark_mode",
        "platform": "mobile",
        "version": "v2",
    }
    entries = list(iter_entries(folder, template=CrafterTemplate(prompt="{platform}: {scenario}")))
    by_name = {Path(e.path).name: e for e in entries}
    skipped = by_name["notes.json"]
    assert skipped.record is None and skipped.problem is not None
    assert skipped.problem.code == "skipped_file" and skipped.problem.severity == "warning"
    record = by_name["dashboard_sales-analytics_web_v1.json"].record
    assert record is not None
    assert record.messages[1] == {"role": "user", "content": "web: sales analytics"}
    assert record.response == '{"type": "FRAME"}'
    assert record.metadata["category"] == "dashboard" and record.metadata["version"] == "v1"


CHAT = [Record(messages=[SYSTEM, USER, ANSWER]), Record(messages=[USER, ANSWER])]
PAIRS = [
    Record(messages=[USER], chosen=[ANSWER], rejected=[{"role": "assistant", "content": "{}"}])
]


@pytest.mark.parametrize(
    ("fmt", "records", "columns"),
    [
        ("openai", CHAT, {"messages"}),
        ("together", CHAT, {"messages"}),
        ("sharegpt", CHAT, {"conversations"}),
        ("alpaca", CHAT, {"instruction", "input", "output"}),
        ("prompt-completion", [CHAT[1]], {"prompt", "completion"}),
        ("dpo", PAIRS, {"input", "preferred_output", "non_preferred_output"}),
        ("parquet", CHAT, {"messages"}),
        ("hf", CHAT, {"messages"}),
        ("parquet", PAIRS, {"prompt", "chosen", "rejected"}),
    ],
)
def test_exports_load_with_datasets_and_read_back(
    tmp_path: Path, fmt: str, records: list[Record], columns: set[str]
) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    written = write_splits({"train": records, "eval": records}, out, fmt)
    if fmt == "hf":
        loaded = datasets.load_from_disk(str(out))["train"]
    else:
        builder = "parquet" if fmt == "parquet" else "json"
        loaded = datasets.load_dataset(builder, data_files=str(written["train"]), split="train")
    assert columns <= set(loaded.column_names) and len(loaded) == len(records)
    read_back = [e.record for e in iter_entries(written["train"]) if "eval" not in e.path]
    assert all(r is not None for r in read_back)
    assert [r.response for r in read_back if r] == [r.response for r in records]


def test_export_is_atomic_and_refuses_wrong_shapes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match="cannot write the train split as dpo"):
        write_splits({"train": CHAT}, out, "dpo")
    assert not out.exists() and not list(tmp_path.iterdir())
    write_splits({"train": CHAT}, out, "openai")
    with pytest.raises(InputError, match="already exists"):
        write_splits({"train": CHAT}, out, "openai")
