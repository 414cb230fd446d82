"""Dataset formats: read every common fine-tuning format into one ``Record`` shape, write it back.

Readers take JSONL, JSON (arrays or one object), Parquet, ``datasets`` ``save_to_disk`` folders
and folders of ``{category}_{scenario}_{platform}_{version}.json`` layout files; writers produce
OpenAI/Together chat, DPO, TRL preference, prompt/completion, alpaca, ShareGPT, Parquet and
``datasets`` folders. Capture imports through these readers and curate validates and exports
through them, so "a valid OpenAI line" means one thing everywhere.
"""

from tuneloop.formats.containers import container_of, iter_items
from tuneloop.formats.crafter import DEFAULT_PROMPT, DEFAULT_SYSTEM, CrafterTemplate, parse_name
from tuneloop.formats.io import (
    EXPORT_FORMATS,
    Entry,
    MixedFormatsError,
    atomic_write_text,
    data_files,
    describe_lines,
    file_format,
    iter_entries,
    rows_for,
    write_jsonl,
    write_splits,
    write_tables,
)
from tuneloop.formats.records import Finding, Item, Message, Record
from tuneloop.formats.schemas import (
    RECORD_FORMATS,
    FormatProblem,
    detect,
    log_line,
    normalise_format,
    to_record,
    type_name,
)

__all__ = [
    "DEFAULT_PROMPT",
    "DEFAULT_SYSTEM",
    "EXPORT_FORMATS",
    "RECORD_FORMATS",
    "CrafterTemplate",
    "Entry",
    "Finding",
    "FormatProblem",
    "Item",
    "Message",
    "MixedFormatsError",
    "Record",
    "atomic_write_text",
    "container_of",
    "data_files",
    "describe_lines",
    "detect",
    "file_format",
    "iter_entries",
    "iter_items",
    "log_line",
    "normalise_format",
    "parse_name",
    "rows_for",
    "to_record",
    "type_name",
    "write_jsonl",
    "write_splits",
    "write_tables",
]
