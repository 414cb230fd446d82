"""Prometheus metrics of one gateway app, in the app's own registry (no process-global state).

Labels are task, model, route and reason names, never tenants' data or keys.

With several worker processes (``--workers N``) each process counts its own calls, and a scrape
reaches one of them at random. The launcher then gives every worker one folder in
``PROMETHEUS_MULTIPROC_DIR`` (emptied at start): prometheus_client's multiprocess mode keeps each
process's values in files there, and ``/metrics`` in any worker adds up the files of all of them
(:func:`render_multiprocess`). Queue depths are summed over live processes only.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    """Counters and histograms the gateway updates and ``/metrics`` exposes."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        found = os.environ.get(MULTIPROCESS_ENV)
        self.multiprocess_dir = multiprocess_dir or (Path(found) if found else None)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tuneloop_gateway_requests",
            "Chat completion requests answered",
            ["task", "model", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tuneloop_gateway_request_seconds",
            "Wall time of chat completion requests",
            ["task", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "tuneloop_gateway_upstream_seconds",
            "Wall time of successful provider calls",
            ["task", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "tuneloop_gateway_first_token_seconds",
            "Wall time of streamed requests until their first text was ready to send",
            ["task", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_checks = Counter(
            "tuneloop_gateway_stream_check_failures",
            "Streamed answers that failed the task's checks after they were sent",
            ["task", "model", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "tuneloop_gateway_fallbacks",
            "Providers given up on during a call, by reason",
            ["task", "model", "reason"],
            registry=r,
        )
        self.tokens = Counter(
            "tuneloop_gateway_tokens",
            "Tokens of answered calls",
            ["task", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "tuneloop_gateway_cost_usd",
            "Provider cost of answered calls",
            ["task", "model"],
            registry=r,
        )
        self.log_queue = Gauge(
            "tuneloop_gateway_log_queue_depth",
            "Calls waiting to be written to the store",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.logged = Counter(
            "tuneloop_gateway_logged_calls", "Calls written to the store", registry=r
        )
        self.spilled = Counter(
            "tuneloop_gateway_spilled_calls",
            "Calls kept in the spill file while the store was down",
            registry=r,
        )
        self.not_stored = Counter(
            "tuneloop_gateway_unstored_calls",
            "Calls served but not stored (opted-out tenants)",
            registry=r,
        )
        self.shadow_queue = Gauge(
            "tuneloop_gateway_shadow_queue_depth",
            "Shadow calls waiting",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.shadow = Counter(
            "tuneloop_gateway_shadow_calls",
            "Shadow calls by outcome",
            ["task", "model", "outcome"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition: every worker's values when they share a folder, else ours."""
        if self.multiprocess_dir is not None:
            return render_multiprocess(self.multiprocess_dir)
        return generate_latest(self.registry)

    def close(self) -> None:
        """This process stops: its queue depths no longer count (its counters still do)."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))


def render_multiprocess(folder: Path) -> bytes:
    """The metrics of every process that wrote to ``folder``, added up (counters, histograms)
    or summed over live processes (gauges)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry)


def prepare_multiprocess_dir(folder: Path) -> Path:
    """Create ``folder`` or empty it of a previous run's value files, which would otherwise be
    added to this run's counts."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    return folder
