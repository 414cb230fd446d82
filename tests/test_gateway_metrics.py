"""/metrics with several worker processes: each counts its own calls into a shared folder and
any of them reports the sum (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tuneloop
from tuneloop.gateway.metrics import (
    MULTIPROCESS_ENV,
    prepare_multiprocess_dir,
    render_multiprocess,
)

WORKER = """
import sys
from tuneloop.gateway.metrics import GatewayMetrics

metrics = GatewayMetrics()
calls = int(sys.argv[1])
for _ in range(calls):
    metrics.requests.labels("ui-layout", "ui-layout@v1", "production", "200").inc()
    metrics.latency.labels("ui-layout", "production").observe(0.01)
metrics.log_queue.set(calls)
if sys.argv[2] == "stops":
    metrics.close()
"""


def run_worker(folder: Path, calls: int, ending: str) -> None:
    source = str(Path(tuneloop.__file__).parents[1])  # this checkout's code, not an installed one
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, MULTIPROCESS_ENV: str(folder), "PYTHONPATH": path}
    subprocess.run(
        [sys.executable, "-c", WORKER, str(calls), ending], env=env, check=True, timeout=120
    )


def sample(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name)]
    return float(line.rsplit(" ", 1)[1])


def test_two_worker_processes_are_counted_together(tmp_path: Path) -> None:
    folder = prepare_multiprocess_dir(tmp_path / "metrics")
    run_worker(folder, 3, "stops")
    run_worker(folder, 4, "runs")
    text = render_multiprocess(folder).decode()
    requests = (
        'tuneloop_gateway_requests_total{model="ui-layout@v1",route="production",'
        'status="200",task="ui-layout"}'
    )
    assert sample(text, requests) == 7.0
    assert sample(text, 'tuneloop_gateway_request_seconds_count{route="production"') == 7.0
    # a queue depth counts live processes only: the one that stopped no longer adds its 3
    assert sample(text, "tuneloop_gateway_log_queue_depth") == 4.0


def test_the_launcher_empties_a_previous_runs_values(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"old counts")
    (folder / "notes.txt").write_text("not ours")
    assert prepare_multiprocess_dir(folder) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
