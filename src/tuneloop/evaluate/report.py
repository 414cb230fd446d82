"""Side-by-side comparison of eval runs (base vs fine-tuned vs teacher), as a dict or a table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from tuneloop.evaluate.ratings import Rating
from tuneloop.store import EvalRun

# (metric key, column title, format, higher is better)
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("valid_json_rate", "valid JSON", "{:.0%}", True),
    ("similarity", "similarity", "{:.3f}", True),
    ("exact_match_rate", "exact match", "{:.0%}", True),
    ("latency_p50_ms", "p50 ms", "{:,.0f}", False),
    ("latency_p95_ms", "p95 ms", "{:,.0f}", False),
    ("tokens_per_s", "tokens/s", "{:,.1f}", True),
)
QUALITY = {"valid_json_rate", "similarity", "exact_match_rate"}
EXTRA_KEYS = (
    "n",
    "errors",
    "first_error",
    "latency_ms",
    "batch_size",
    "intervals",
    "breakdown",
    "metrics",
    "cost_usd",
)


def comparison_dict(runs: Sequence[EvalRun]) -> dict[str, dict[str, Any]]:
    """``{label: {metric: value, ..., "n", "errors", "provider", "run_id"}}`` in run order.

    A label used by several runs gets ``#<run id>`` appended so no run is hidden. User
    metrics of each run are included under their names.
    """
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    table: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = run.label if counts[run.label] == 1 else f"{run.label}#{run.id}"
        table[key] = {
            **{column: run.metrics.get(column) for column, *_ in COLUMNS},
            **{name: run.metrics.get(name) for name in run.metrics.get("metrics") or []},
            **{extra: run.metrics.get(extra) for extra in EXTRA_KEYS},
            "tokens_estimated": run.metrics.get("tokens_estimated", False),
            "provider": run.provider,
            "run_id": run.id,
        }
    return table


def comparison_table(runs: Sequence[EvalRun], *, title: str | None = "evaluation") -> Table:
    """A rich table, one row per run; the best value of each column is bold.

    Quality means show their bootstrap 95 % interval; a model whose every example failed shows
    ``error`` instead of rates it never earned. Latency is per request as measured: with a
    batching provider a request waits for its whole batch, and tokens/s is batch throughput
    (the ``batch`` column says which).
    """
    rows = comparison_dict(runs)
    extra = sorted({name for run in runs for name in run.metrics.get("metrics") or []})
    columns = [*COLUMNS[:3], *((name, name, "{:.3f}", True) for name in extra), *COLUMNS[3:]]
    best = {column: _best(rows, column, higher) for column, _, _, higher in columns}
    table = Table(title=title)
    table.add_column("model")
    table.add_column("n", justify="right")
    for _, header, _, _ in columns:
        table.add_column(header, justify="right")
    table.add_column("batch", justify="right")
    table.add_column("errors", justify="right")
    for label, row in rows.items():
        crashed = bool(row["n"]) and row["errors"] == row["n"]
        cells = [label, str(row["n"] if row["n"] is not None else "-")]
        for column, _, fmt, _ in columns:
            value = row.get(column)
            if crashed:
                cells.append("[red]error[/red]")
                continue
            text = "-" if value is None else fmt.format(value)
            interval = (row.get("intervals") or {}).get(column)
            if (column in QUALITY or column in extra) and interval and None not in interval:
                text += f" [dim][{fmt.format(interval[0])}–{fmt.format(interval[1])}][/dim]"
            if column == "tokens_per_s" and value is not None and row["tokens_estimated"]:
                text = f"~{text}"  # some providers did not report tokens: estimated
            if len(rows) > 1 and value is not None and value == best[column]:
                text = f"[bold]{text}[/bold]"
            cells.append(text)
        cells.append(str(row["batch_size"] or "-"))
        errors = row["errors"] or 0
        cells.append(f"[red]{errors}[/red]" if errors else "0")
        table.add_row(*cells)
    return table


def breakdown_table(runs: Sequence[EvalRun], key: str, *, title: str | None = None) -> Table:
    """One row per (model, group of ``key``): n and each score's mean with its interval."""
    rows = comparison_dict(runs)
    scores = [
        "valid_json",
        "similarity",
        "exact_match",
        *sorted({name for run in runs for name in run.metrics.get("metrics") or []}),
    ]
    table = Table(title=title or f"by {key}")
    for header in ("model", key, "n", *scores):
        table.add_column(header, justify="left" if header in ("model", key) else "right")
    for label, row in rows.items():
        groups = (row.get("breakdown") or {}).get(key) or {}
        for group, estimates in groups.items():
            cells = [label, group, str(max(e["n"] for e in estimates.values()))]
            for score in scores:
                estimate = estimates.get(score) or {}
                mean = estimate.get("mean")
                cells.append(
                    "-"
                    if mean is None
                    else f"{mean:.3f} [dim][{estimate['low']:.2f}–{estimate['high']:.2f}][/dim]"
                )
            table.add_row(*cells)
    return table


def run_errors(runs: Sequence[EvalRun]) -> list[str]:
    """One line per run that had failed examples: how many, and the first error."""
    lines = []
    for run in runs:
        errors = run.metrics.get("errors") or 0
        if errors:
            lines.append(
                f"{run.label}: {errors} of {run.metrics.get('n')} examples failed; "
                f"first error: {run.metrics.get('first_error')}"
            )
    return lines


def _best(rows: dict[str, dict[str, Any]], column: str, higher: bool) -> float | None:
    values = [
        float(row[column])
        for row in rows.values()
        if row.get(column) is not None and not (row["n"] and row["errors"] == row["n"])
    ]
    if not values:
        return None
    return max(values) if higher else min(values)


def leaderboard_table(rows: Sequence[Rating], *, title: str | None = "leaderboard") -> Table:
    """Bradley–Terry rating with its 95 % interval, interval rank, online Elo and the record."""
    table = Table(title=title)
    for header in ("rank", "model", "rating", "95% interval", "online Elo", "battles", "W-L-T"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in rows:
        table.add_row(
            str(row.rank),
            row.model,
            f"{row.rating:.0f}",
            f"{row.low:.0f} – {row.high:.0f}",
            f"{row.elo:.0f}",
            str(row.battles),
            f"{row.wins}-{row.losses}-{row.ties}",
        )
    return table


def leaderboard_markdown(rows: Sequence[Rating]) -> str:
    """The leaderboard as a markdown table."""
    lines = [
        "| rank | model | rating | 95% interval | online Elo | battles | W-L-T |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.rank} | {r.model} | {r.rating:.0f} | {r.low:.0f} – {r.high:.0f} | {r.elo:.0f} "
        f"| {r.battles} | {r.wins}-{r.losses}-{r.ties} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
