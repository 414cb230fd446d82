"""Capture: log every model call with who asked and what it cost, and turn user reactions into
rewards in [-1, 1] and a quality score 0–10 that curation filters on.

Entry point: ``tuneloop.connect()`` → :class:`tuneloop.capture.client.Tuneloop`.
"""

from tuneloop.capture.client import Tuneloop, connect
from tuneloop.capture.importer import import_jsonl
from tuneloop.capture.records import parse_time
from tuneloop.capture.stats import collection_stats

__all__ = [
    "Tuneloop",
    "collection_stats",
    "connect",
    "import_jsonl",
    "parse_time",
]
