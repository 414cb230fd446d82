"""A persistent answer cache keyed by the exact request, so no call is ever paid for twice.

The key is a hash of the provider spec, the messages, the request parameters and the seed. Each
answer is committed as soon as it arrives (SQLite in WAL mode), so a run killed at any point
loses at most the calls that were in flight; a re-run finds everything else here.

The key is also each call's idempotency key, recorded (``mark_sent``) before the request leaves
and cleared when its answer or error is back. After a hard kill the keys still recorded are the
calls that were in flight: a resumed run re-sends them under the same key, so an upstream that
honours ``Idempotency-Key`` hands back the answer it already made instead of making (and
billing) another. One that does not charges once more for each of those calls, at most the
run's ``concurrency``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneloop.jsontext import dumps_canonical


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    provider: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_ms: float


def request_key(
    provider: str, messages: list[dict[str, Any]], params: dict[str, Any], seed: int
) -> str:
    payload = {"provider": provider, "messages": messages, "params": params, "seed": seed}
    return hashlib.sha256(dumps_canonical(payload).encode()).hexdigest()


class AnswerCache:
    """``get``/``put`` by request key in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Durable across a killed process (what resuming needs) without an fsync per answer.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "provider TEXT, model TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "cost_usd REAL, latency_ms REAL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, sent_at REAL)")
        self._db.commit()

    def get(self, key: str) -> CachedAnswer | None:
        row = self._db.execute(
            "SELECT text, provider, model, prompt_tokens, completion_tokens, cost_usd, latency_ms "
            "FROM answers WHERE key = ?",
            (key,),
        ).fetchone()
        return CachedAnswer(*row) if row else None

    def put(self, key: str, answer: CachedAnswer) -> None:
        values = asdict(answer)
        self._db.execute(
            "INSERT OR IGNORE INTO answers VALUES (:key, :text, :provider, :model, "
            ":prompt_tokens, :completion_tokens, :cost_usd, :latency_ms)",
            {"key": key, **values},
        )
        self._db.execute("DELETE FROM sent WHERE key = ?", (key,))
        self._db.commit()

    def mark_sent(self, key: str) -> bool:
        """Record that the call ``key`` is about to be sent, committed before it leaves.

        True when it was recorded already and never settled: a call that was in flight when an
        earlier process died, sent again now.
        """
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO sent VALUES (?, ?)", (key, time.time())
        ).rowcount
        self._db.commit()
        return inserted == 0

    def settle(self, key: str) -> None:
        """The call ``key`` ended without an answer to keep (an error): no longer in flight."""
        self._db.execute("DELETE FROM sent WHERE key = ?", (key,))
        self._db.commit()

    def in_flight(self) -> int:
        """Calls sent but never settled: those in flight when a process died."""
        return int(self._db.execute("SELECT count(*) FROM sent").fetchone()[0])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()
