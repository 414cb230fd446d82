"""Callables that pipeline files in the synth tests name as providers and gates."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any


def idea(messages: list[dict[str, Any]]) -> str:
    """A deterministic 'teacher' for the first step: turns the request into a question."""
    return "Question: " + str(messages[-1]["content"]) + "?"


def kill_after(text: str, value: Any, variables: dict[str, Any]) -> bool:
    """A gate that SIGKILLs its own process on the Nth output (``SYNTH_KILL_AFTER``), counting
    in ``SYNTH_KILL_COUNTER``: a crash at a known point between two paid calls."""
    limit = os.environ.get("SYNTH_KILL_AFTER")
    if limit:
        counter = Path(os.environ["SYNTH_KILL_COUNTER"])
        seen = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(seen))
        if seen >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)
    return True


def scenario(messages: list[dict[str, Any]]) -> str:
    """A JSON scenario whose title repeats the request (so each input gets its own)."""
    content = str(messages[-1]["content"])
    return '{"title": "' + content + '", "audience": "new customers"}'


def long_enough(text: str, value: Any, variables: dict[str, Any]) -> bool:
    """A custom gate: drops the answers to sample 1 of every scenario."""
    return "sample 1" not in text
