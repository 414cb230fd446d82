"""Side-by-side comparison of eval runs (base vs fine-tuned vs teacher), as a dict or a table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from tuneloop.store import EvalRun

# (metric key, column title, format, higher is better)
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("valid_json_rate", "valid JSON", "{:.0%}", True),
    ("similarity", "similarity", "{:.3f}", True),
    ("exact_match_rate", "exact match", "{:.0%}", True),
    ("latency_ms", "latency ms", "{:,.0f}", False),
    ("latency_p95_ms", "p95 ms", "{:,.0f}", False),
    ("tokens_per_s", "tokens/s", "{:,.1f}", True),
)


def comparison_dict(runs: Sequence[EvalRun]) -> dict[str, dict[str, Any]]:
    """``{label: {metric: value, ..., "n", "errors", "provider", "run_id"}}`` in run order.

    A label used by several runs gets ``#<run id>`` appended so no run is hidden.
    """
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    table: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = run.label if counts[run.label] == 1 else f"{run.label}#{run.id}"
        table[key] = {
            **{column: run.metrics.get(column) for column, *_ in COLUMNS},
            "n": run.metrics.get("n"),
            "errors": run.metrics.get("errors"),
            "tokens_estimated": run.metrics.get("tokens_estimated", False),
            "provider": run.provider,
            "run_id": run.id,
        }
    return table


def comparison_table(runs: Sequence[EvalRun], *, title: str | None = "evaluation") -> Table:
    """A rich table, one row per run; the best value of each column is bold."""
    rows = comparison_dict(runs)
    best = {column: _best(rows, column, higher) for column, _, _, higher in COLUMNS}
    table = Table(title=title)
    table.add_column("model")
    table.add_column("n", justify="right")
    for _, header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("errors", justify="right")
    for label, row in rows.items():
        cells = [label, str(row["n"] if row["n"] is not None else "-")]
        for column, _, fmt, _ in COLUMNS:
            value = row[column]
            text = "-" if value is None else fmt.format(value)
            if column == "tokens_per_s" and value is not None and row["tokens_estimated"]:
                text = f"~{text}"  # some providers did not report tokens: estimated
            if len(rows) > 1 and value is not None and value == best[column]:
                text = f"[bold]{text}[/bold]"
            cells.append(text)
        errors = row["errors"] or 0
        cells.append(f"[red]{errors}[/red]" if errors else "0")
        table.add_row(*cells)
    return table


def _best(rows: dict[str, dict[str, Any]], column: str, higher: bool) -> float | None:
    values = [float(row[column]) for row in rows.values() if row[column] is not None]
    if not values:
        return None
    return max(values) if higher else min(values)
