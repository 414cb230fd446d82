"""The fault test: an import killed by SIGTERM at a random point and run again stores every line
exactly once (no loss, no duplicate), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import tuneloop
from tuneloop.store import Feedback, Interaction, Store

LINES = 60_000
SRC = str(Path(tuneloop.__file__).resolve().parents[1])


def _write_file(path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(LINES):
            n = i - 1 if i % 100 == 1 else i  # every 100th line repeats the one before it
            record = {
                "messages": [{"role": "user", "content": f"Design screen number {n}"}],
                "response": f'{{"type": "FRAME", "name": "screen {n}"}}',
                "tenant": f"tenant-{n % 7}",
            }
            if i % 10 == 0:
                record["feedback"] = [{"kind": "thumbs_up"}]
            handle.write(json.dumps(record) + "\n")


def _count(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(Interaction)) or 0


@pytest.mark.slow
def test_an_import_killed_at_a_random_point_and_run_again_stores_each_line_once(
    store_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "calls.jsonl"
    _write_file(data)
    config = tmp_path / "tuneloop.toml"
    config.write_text(f'workspace = "ws"\n[store]\nurl = "{store_url}"\n', encoding="utf-8")
    store = Store(store_url)
    seed = int.from_bytes(os.urandom(4), "big")
    stop_after = random.Random(seed).randint(1, 50_000)  # rows stored before the SIGTERM
    command = [
        sys.executable,
        "-m",
        "tuneloop.cli.app",
        "log",
        "import",
        str(data),
        "-c",
        str(config),
    ]
    env = {**os.environ, "PYTHONPATH": SRC}
    first = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    while first.poll() is None and _count(store) < stop_after:
        time.sleep(0.05)
    assert first.poll() is None, f"seed {seed}: the import ended before the signal"
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, (seed, stderr)
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    partial = _count(store)
    assert stop_after <= partial < LINES, seed

    again = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    assert again.returncode == 0, (seed, again.stderr)
    assert f"{LINES - partial} imported, 0 skipped (bad lines), {partial} already present" in (
        again.stdout.replace("\n", "")
    ), seed
    assert _count(store) == LINES, seed
    with store.session() as session:
        keys = session.scalar(select(func.count(func.distinct(Interaction.idempotency_key))))
        rows = session.execute(select(Feedback.kind, func.count()).group_by(Feedback.kind))
        kinds = {kind: number for kind, number in rows}
    assert keys == LINES
    # Each line's feedback once; each repeated line once seen as a regenerate of the one before.
    assert kinds == {"thumbs_up": LINES // 10, "regenerated": LINES // 100}, seed
    store.close()
