"""Reading the entries of JSONL, JSON, Parquet files and ``datasets`` folders.

Every entry keeps the line (JSONL, and JSON arrays, whose items are located by offset) or row
number it came from, so every later message can say ``FILE:LINE``. Reading streams: a JSONL or
Parquet file is never loaded whole, and a read error is an entry of its own, not an exception,
so one bad line never hides the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneloop.errors import InputError
from tuneloop.formats.records import Finding, Item

BOM = b"\xef\xbb\xbf"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json",)
PARQUET_SUFFIXES = (".parquet", ".pq")
HF_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
PARQUET_BATCH_ROWS = 1024


def is_hf_folder(path: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and any((path / marker).is_file() for marker in HF_MARKERS)


def container_of(path: Path) -> str:
    """``jsonl``, ``json``, ``parquet`` or ``hf`` for a path, or an InputError saying why not."""
    if is_hf_folder(path):
        return "hf"
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in JSON_SUFFIXES:
        return "json"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise InputError(
        f"{path}: unknown file type {suffix or '(none)'}; expected .jsonl, .json, .parquet "
        "or a folder saved with datasets' save_to_disk"
    )


def iter_items(path: Path) -> Iterator[Item]:
    """Every entry of one file or ``datasets`` folder, in order."""
    kind = container_of(path)
    if kind == "jsonl":
        yield from _iter_jsonl(path)
    elif kind == "json":
        yield from _iter_json(path)
    elif kind == "parquet":
        yield from _iter_parquet(path)
    else:
        yield from _iter_hf(path)


def _open(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _iter_jsonl(path: Path) -> Iterator[Item]:
    name = str(path)
    with _open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            bom = number == 1 and raw.startswith(BOM)
            if bom:
                raw = raw[len(BOM) :]
            yield _decode_line(name, number, raw, bom)


def _decode_line(name: str, number: int, raw: bytes, bom: bool) -> Item:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Item(
            name,
            number,
            error=Finding(name, number, "invalid_utf8", f"byte {exc.start + 1} is not UTF-8 text"),
        )
    if not text.strip():
        return Item(
            name,
            number,
            error=Finding(name, number, "blank_line", "blank line (uploads reject them)"),
        )
    try:
        return Item(name, number, value=json.loads(text), bom=bom)
    except json.JSONDecodeError as exc:
        return Item(
            name,
            number,
            error=Finding(
                name, number, "json_parse", f"not valid JSON: {exc.msg} (column {exc.colno})"
            ),
        )
    except RecursionError:
        return Item(
            name,
            number,
            error=Finding(name, number, "json_parse", "not valid JSON: nested too deeply"),
        )


def _iter_json(path: Path) -> Iterator[Item]:
    """A JSON array (one entry per item, at the item's line), one object, or JSONL named .json."""
    name = str(path)
    with _open(path) as handle:
        data = handle.read()
    bom = data.startswith(BOM)
    if bom:
        data = data[len(BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield Item(
            name,
            line,
            error=Finding(name, line, "invalid_utf8", f"byte {exc.start + 1} is not UTF-8 text"),
        )
        return
    stripped = text.lstrip()
    if not stripped:
        yield Item(name, 1, error=Finding(name, 1, "json_parse", "empty file"))
        return
    if stripped.startswith("["):
        yield from _iter_array(name, text, bom)
        return
    decoder = json.JSONDecoder()
    start = len(text) - len(stripped)
    try:
        value, end = decoder.raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError) as exc:
        yield _parse_error(name, exc)
        return
    if text[end:].strip():  # more values follow: it is JSONL with a .json name
        yield from _iter_jsonl(path)
        return
    yield Item(name, text.count("\n", 0, start) + 1, value=value, bom=bom)


def _iter_array(name: str, text: str, bom: bool) -> Iterator[Item]:
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    length = len(text)
    line = 1 + text.count("\n", 0, position)
    last = 0
    expect_value = True
    while True:
        while position < length and text[position] in " \t\r\n":
            if text[position] == "\n":
                line += 1
            position += 1
        if position >= length:
            yield Item(
                name,
                line,
                error=Finding(name, line, "json_parse", "not valid JSON: the array is not closed"),
            )
            return
        char = text[position]
        if char == "]" and (not expect_value or last == 0):
            if text[position + 1 :].strip():
                yield Item(
                    name,
                    line,
                    error=Finding(
                        name, line, "json_parse", "not valid JSON: extra data after the array"
                    ),
                )
            return
        if char == "," and not expect_value:
            expect_value = True
            position += 1
            continue
        if not expect_value:
            column = position - text.rfind("\n", 0, position)
            yield Item(
                name,
                line,
                error=Finding(
                    name,
                    line,
                    "json_parse",
                    f"not valid JSON: expected ',' or ']' (column {column})",
                ),
            )
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield _parse_error(name, exc)
            return
        last += 1
        yield Item(name, line, value=value, bom=bom)
        line += text.count("\n", position, end)
        position = end
        expect_value = False


def _parse_error(name: str, exc: Exception) -> Item:
    if isinstance(exc, json.JSONDecodeError):
        return Item(
            name,
            exc.lineno,
            error=Finding(
                name, exc.lineno, "json_parse", f"not valid JSON: {exc.msg} (column {exc.colno})"
            ),
        )
    return Item(name, 1, error=Finding(name, 1, "json_parse", "not valid JSON: nested too deeply"))


def _iter_parquet(path: Path) -> Iterator[Item]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except Exception as exc:  # pyarrow raises its own error types for a damaged file
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from None
    row = 0
    with parquet:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for value in batch.to_pylist():
                row += 1
                yield Item(str(path), row, value=_drop_nulls(value))


def _iter_hf(path: Path) -> Iterator[Item]:
    try:
        from datasets import Dataset, DatasetDict, load_from_disk
    except ImportError:
        raise InputError(
            "reading a datasets folder needs datasets (pip install datasets)"
        ) from None
    try:
        loaded = load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for a damaged folder
        raise InputError(f"{path} is not a readable datasets folder: {exc}") from None
    parts: list[tuple[str, Dataset]]
    if isinstance(loaded, DatasetDict):
        parts = [(f"{path}/{split}", loaded[split]) for split in loaded]
    else:
        parts = [(str(path), loaded)]
    for name, part in parts:
        for row, value in enumerate(part, start=1):
            yield Item(name, row, value=_drop_nulls(value))


def _drop_nulls(value: Any) -> Any:
    """Columnar formats fill a key missing from a row with null; drop those to get the row back."""
    if isinstance(value, dict):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value
