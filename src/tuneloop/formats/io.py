"""Reading any supported file or folder into entries, and writing records in any export format.

Reading: ``iter_entries(path)`` yields one ``Entry`` per line/row/file with the format it was
read as, the raw value and, when it fits, a ``Record``. The format is detected per file (every
entry's keys must agree: a file that mixes formats is refused, naming the lines of each) unless
one is given. Writing: ``write_splits`` writes each split in the target format into a staging
folder and renames it into place, so an export appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.errors import InputError
from tuneloop.formats.containers import container_of, is_hf_folder, iter_items
from tuneloop.formats.crafter import CrafterTemplate, is_crafter_folder, read_layout_file
from tuneloop.formats.records import Finding, Item, Record
from tuneloop.formats.schemas import (
    FormatProblem,
    detect,
    normalise_format,
    to_record,
    write_alpaca,
    write_dpo,
    write_openai,
    write_preference,
    write_prompt_completion,
    write_sharegpt,
    write_text,
)

DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq")
EXPORT_FORMATS = (
    "openai",
    "together",
    "alpaca",
    "sharegpt",
    "prompt-completion",
    "dpo",
    "preference",
    "text",
    "parquet",
    "hf",
)


class MixedFormatsError(InputError):
    """A file holds entries of more than one format; the message names the lines of each."""


@dataclass
class Entry:
    """One entry read from a file: where, as which format, and what came of it."""

    path: str
    line: int
    format: str | None
    value: Any = None
    record: Record | None = None
    problem: Finding | None = None
    bom: bool = False


def data_files(path: Path) -> list[Path]:
    """The files (or ``datasets`` folders) that make up ``path``, in name order."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_file() or is_hf_folder(path) or is_crafter_folder(path):
        return [path]
    found = sorted(
        child
        for child in path.iterdir()
        if (child.is_file() and child.suffix.lower() in DATA_SUFFIXES) or is_hf_folder(child)
    )
    if not found:
        raise InputError(f"{path} holds no .jsonl, .json or .parquet file")
    return found


def iter_entries(
    path: str | Path,
    *,
    fmt: str | None = None,
    template: CrafterTemplate | None = None,
) -> Iterator[Entry]:
    """Every entry of a file or folder; MixedFormatsError before any entry of a mixed file."""
    chosen = _check_format(fmt)
    for source in data_files(Path(path)):
        if is_crafter_folder(source):
            yield from _crafter_entries(source, template or CrafterTemplate())
        else:
            yield from _file_entries(source, chosen)


def _check_format(fmt: str | None) -> str | None:
    if fmt is None or fmt == "auto":
        return None
    try:
        return normalise_format(fmt)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _crafter_entries(folder: Path, template: CrafterTemplate) -> Iterator[Entry]:
    for child in sorted(folder.iterdir()):
        if not child.is_file():
            continue
        item, record = read_layout_file(child, template)
        yield Entry(item.path, item.line, "crafter" if record else None, None, record, item.error)


def file_format(source: Path) -> str | None:
    """The one format the entries of ``source`` share (None: none recognised); refuses a mix."""
    lines: dict[str, list[int]] = {}
    for item in iter_items(source):
        if item.error is None:
            detected = detect(item.value)
            if detected is not None:
                lines.setdefault(detected, []).append(item.line)
    if len(lines) > 1:
        parts = [f"{name} at {describe_lines(numbers)}" for name, numbers in lines.items()]
        raise MixedFormatsError(
            f"{source} mixes formats: {'; '.join(parts)}; use one format per file"
        )
    return next(iter(lines), None)


def _file_entries(source: Path, fmt: str | None) -> Iterator[Entry]:
    container_of(source)  # an unknown file type fails before anything is read
    chosen = fmt or file_format(source)
    for item in iter_items(source):
        yield entry_from_item(item, chosen)


def entry_from_item(item: Item, fmt: str | None) -> Entry:
    if item.error is not None:
        return Entry(item.path, item.line, fmt, problem=item.error, bom=item.bom)
    if fmt is None:
        return Entry(
            item.path,
            item.line,
            None,
            item.value,
            problem=Finding(
                item.path,
                item.line,
                "unknown_format",
                "no known format has these keys (messages, prompt/completion, instruction/output, "
                "conversations, input/preferred_output, prompt/chosen/rejected or text)",
            ),
            bom=item.bom,
        )
    try:
        record = to_record(item.value, fmt)
    except FormatProblem as exc:
        return Entry(
            item.path,
            item.line,
            fmt,
            item.value,
            problem=Finding(item.path, item.line, exc.code, exc.message),
            bom=item.bom,
        )
    return Entry(item.path, item.line, fmt, item.value, record, bom=item.bom)


def describe_lines(numbers: Sequence[int], limit: int = 8) -> str:
    """``lines 1-3, 7, 9-12`` (the first ``limit`` runs, then how many more)."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    more = f" and {len(runs) - limit} more ranges" if len(runs) > limit else ""
    word = "line" if len(numbers) == 1 else "lines"
    return f"{word} {', '.join(shown)}{more}"


# -- writing ------------------------------------------------------------------------------------


def export_suffix(fmt: str) -> str:
    return {"alpaca": ".json", "parquet": ".parquet", "hf": ""}.get(fmt, ".jsonl")


def rows_for(records: Sequence[Record], fmt: str) -> list[dict[str, Any]]:
    """Each record as one entry of ``fmt`` (parquet and hf take TRL's column layout)."""
    if fmt in ("openai", "together"):
        return [write_openai(r) for r in records]
    if fmt == "dpo":
        return [write_dpo(r) for r in records]
    if fmt == "preference":
        return [write_preference(r) for r in records]
    if fmt == "alpaca":
        return [write_alpaca(r) for r in records]
    if fmt == "sharegpt":
        return [write_sharegpt(r) for r in records]
    if fmt == "text":
        return [write_text(r) for r in records]
    if fmt == "prompt-completion":
        as_text = all(_is_single_turn(r) for r in records)
        return [write_prompt_completion(r, as_text=as_text) for r in records]
    if fmt in ("parquet", "hf"):
        return [_trl_row(r) for r in records]
    raise InputError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")


def _is_single_turn(record: Record) -> bool:
    roles = [m.get("role") for m in record.messages]
    return record.kind == "chat" and roles in (
        ["user", "assistant"],
        ["system", "user", "assistant"],
    )


def _trl_row(record: Record) -> dict[str, Any]:
    if record.kind == "preference":
        return write_preference(record)
    if record.kind == "text":
        return write_text(record)
    return {
        "messages": [
            {"role": str(m.get("role", "")), "content": _content(m)} for m in record.messages
        ]
    }


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def write_splits(
    splits: Mapping[str, Sequence[Record]], out: str | Path, fmt: str, *, overwrite: bool = False
) -> dict[str, Path]:
    """Write ``out/<split><suffix>`` per split (``hf``: one DatasetDict folder), atomically."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty (choose another --out)")
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, records in splits.items():
        try:
            rows[split] = rows_for(records, fmt)
        except FormatProblem as exc:
            raise InputError(f"cannot write the {split} split as {fmt}: {exc.message}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        written = _write_rows(rows, staging, fmt)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if fmt == "hf":
        return {split: out for split in written}
    return {split: out / path.name for split, path in written.items()}


def _write_rows(rows: dict[str, list[dict[str, Any]]], folder: Path, fmt: str) -> dict[str, Path]:
    written: dict[str, Path] = {}
    if fmt == "hf":
        _write_hf(rows, folder)
        return {split: folder for split in rows}
    if fmt == "parquet":
        return _write_parquet(rows, folder)
    for split, split_rows in rows.items():
        target = folder / f"{split}{export_suffix(fmt)}"
        if fmt == "alpaca":
            target.write_text(
                json.dumps(split_rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
            )
        else:
            write_jsonl(split_rows, target)
        written[split] = target
    return written


def write_jsonl(rows: Iterable[dict[str, Any]], target: Path) -> int:
    """Sorted keys and ``\\n`` endings, so equal rows give equal bytes."""
    count = 0
    with target.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def _arrow_tables(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One Arrow table per split, all with one schema (an empty split takes the others')."""
    try:
        import pyarrow as pa
    except ImportError:
        raise InputError("writing Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        everything = pa.Table.from_pylist(
            [row for split_rows in rows.values() for row in split_rows]
        )
        return {
            split: pa.Table.from_pylist(split_rows, schema=everything.schema)
            for split, split_rows in rows.items()
        }
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"the examples do not fit one column layout: {exc}") from None


def _write_parquet(rows: dict[str, list[dict[str, Any]]], folder: Path) -> dict[str, Path]:
    import pyarrow.parquet as pq

    written = {}
    for split, table in _arrow_tables(rows).items():
        written[split] = folder / f"{split}.parquet"
        pq.write_table(table, written[split])
    return written


def _write_hf(rows: dict[str, list[dict[str, Any]]], folder: Path) -> None:
    try:
        from datasets import Dataset, DatasetDict
    except ImportError:
        raise InputError("the hf format needs datasets (pip install datasets)") from None
    parts = {split: Dataset(table) for split, table in _arrow_tables(rows).items()}
    DatasetDict(parts).save_to_disk(str(folder))


def atomic_write_text(target: Path, text: str) -> None:
    """Write beside the target and rename, so a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_tables(
    rows: dict[str, list[dict[str, Any]]], out: Path, fmt: str, *, overwrite: bool = False
) -> None:
    """Rows as one Parquet file (``fmt="parquet"``, every split together) or a ``datasets``
    folder with one split per key, written beside ``out`` and renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            everything = {"all": [row for part in rows.values() for row in part]}
            pq.write_table(_arrow_tables(everything)["all"], staging)
        else:
            staging.mkdir()
            if list(rows) == [""]:
                from datasets import Dataset

                Dataset(_arrow_tables(rows)[""]).save_to_disk(str(staging))
            else:
                _write_hf(rows, staging)
        if out.exists() and overwrite:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink()
