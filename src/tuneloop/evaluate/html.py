"""The suite report: one self-contained HTML file (plots inline) and a markdown summary.

The HTML has no external references (images are base64 PNGs, styles inline), so it can be
mailed, attached to a CI run or opened offline. Plots need matplotlib; without it the report
keeps its tables and says so.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop.jsontext import parse_json

QUALITY = ("valid_json_rate", "similarity", "exact_match_rate")
WORST_EXAMPLES = 5

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ suite }} — evaluation</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}.fail{color:#b00}.ok{color:#070}
.diff td{font-family:monospace;font-size:12px;text-align:left;vertical-align:top}
.diff_add{background:#dfd}.diff_chg{background:#ffc}.diff_sub{background:#fdd}
small{color:#666}
</style></head><body>
<h1>{{ suite }}</h1>
<p><small>{{ created_at }} · results in {{ directory }}</small></p>
{% if gate %}<h2>Gate: {% if gate.passed %}<span class="ok">passed</span>{% else %}
<span class="fail">failed</span>{% endif %} ({{ gate.candidate }} vs {{ gate.baseline }})</h2>
<ul>{% for c in gate.clauses %}<li class="{{ 'ok' if c.passed else 'fail' }}">{{ c.clause }}
 — {{ fmt(c.left) }} vs {{ fmt(c.right) }}</li>{% endfor %}</ul>{% endif %}
{% for note in notes %}<p><em>{{ note }}</em></p>{% endfor %}
<h2>Metrics</h2>
<table><tr><th>model</th><th>n</th><th>errors</th>{% for m in metric_names %}<th>{{ m }}</th>
{% endfor %}<th>p50 ms</th><th>p95 ms</th><th>tokens/s</th><th>batch</th><th>cost $</th></tr>
{% for label, run in runs.items() %}<tr><td>{{ label }}</td><td>{{ run.metrics.n }}</td>
<td class="{{ 'fail' if run.metrics.errors else '' }}">{{ run.metrics.errors }}</td>
{% for m in metric_names %}<td>{{ with_interval(run.metrics, m) }}</td>{% endfor %}
<td>{{ fmt(run.metrics.latency_p50_ms) }}</td><td>{{ fmt(run.metrics.latency_p95_ms) }}</td>
<td>{{ fmt(run.metrics.tokens_per_s) }}</td><td>{{ run.metrics.batch_size or '–' }}</td>
<td>{{ fmt(run.metrics.cost_usd) }}</td></tr>{% endfor %}</table>
{% if plots.metrics %}<img alt="metrics with 95% intervals"
 src="data:image/png;base64,{{ plots.metrics }}">
{% else %}<p><small>plots need matplotlib</small></p>{% endif %}
{% if leaderboard %}<h2>Leaderboard ({{ battles }} battles)</h2>
<table><tr><th>rank</th><th>model</th><th>Bradley–Terry</th><th>95% interval</th>
<th>online Elo</th><th>W-L-T</th></tr>{% for r in leaderboard %}<tr><td>{{ r.rank }}</td>
<td>{{ r.model }}</td><td>{{ '%.0f' % r.rating }}</td>
<td>{{ '%.0f' % r.low }} – {{ '%.0f' % r.high }}</td><td>{{ '%.0f' % r.elo }}</td>
<td>{{ r.wins }}-{{ r.losses }}-{{ r.ties }}</td></tr>{% endfor %}</table>
{% if plots.ratings %}<img alt="ratings with 95% intervals"
 src="data:image/png;base64,{{ plots.ratings }}">{% endif %}
{% endif %}
{% for key, rows in breakdowns.items() %}<h2>By {{ key }}</h2>
<table><tr><th>model</th><th>{{ key }}</th><th>n</th>{% for m in breakdown_scores %}<th>{{ m }}</th>
{% endfor %}</tr>{% for row in rows %}<tr><td>{{ row.model }}</td><td>{{ row.group }}</td>
<td>{{ row.n }}</td>{% for m in breakdown_scores %}<td>{{ row.cells[m] }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endfor %}
<h2>Worst examples of {{ worst_model }}</h2>
{% for ex in worst %}<h3>#{{ ex.index }} — similarity {{ fmt(ex.similarity) }}</h3>
<p><small>{{ ex.prompt }}</small></p>{% if ex.error %}<p class="fail">{{ ex.error }}</p>{% endif %}
<div class="diff">{{ ex.diff | safe }}</div>{% endfor %}
</body></html>
"""


def write_reports(
    result: Mapping[str, Any], results: Mapping[str, Sequence[Mapping[str, Any]]], directory: Path
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``summary.md`` into ``directory``."""
    from jinja2 import Environment

    runs = result["runs"]
    metric_names = [
        m for m in QUALITY if any(r["metrics"].get(m) is not None for r in runs.values())
    ]
    metric_names += sorted({m for r in runs.values() for m in r["metrics"].get("metrics") or []})
    gate = result.get("gate")
    worst_model = (gate or {}).get("candidate") or (list(runs)[-1] if runs else "")
    context = {
        **result,
        "metric_names": metric_names,
        "fmt": _fmt,
        "with_interval": _with_interval,
        "plots": {
            "metrics": _metric_plot(runs, metric_names),
            "ratings": _rating_plot(result.get("leaderboard") or []),
        },
        "breakdowns": _breakdown_rows(runs),
        "breakdown_scores": [
            "valid_json",
            "similarity",
            "exact_match",
            *[m for m in metric_names if m not in QUALITY],
        ],
        "worst_model": worst_model,
        "worst": _worst(results.get(worst_model) or []),
    }
    environment = Environment(autoescape=True)
    page = environment.from_string(TEMPLATE).render(**context)
    html_path = directory / "report.html"
    html_path.write_text(page, encoding="utf-8")
    md_path = directory / "summary.md"
    md_path.write_text(markdown_summary(result, metric_names), encoding="utf-8")
    return html_path, md_path


def markdown_summary(result: Mapping[str, Any], metric_names: Sequence[str]) -> str:
    """The headline numbers as markdown: metrics with intervals, leaderboard, breakdowns, gate."""
    runs = result["runs"]
    lines = [f"# {result['suite']}", ""]
    gate = result.get("gate")
    if gate:
        lines += [
            f"**Gate {'passed' if gate['passed'] else 'FAILED'}** "
            f"({gate['candidate']} vs {gate['baseline']})",
            "",
        ]
        lines += [
            f"- {'ok' if c['passed'] else 'FAILED'}: `{c['clause']}` "
            f"({_fmt(c['left'])} vs {_fmt(c['right'])})"
            for c in gate["clauses"]
        ]
        lines.append("")
    lines += [
        "| model | n | errors | " + " | ".join(metric_names) + " | p50 ms | p95 ms |",
        "|---|---:|---:|" + "---:|" * (len(metric_names) + 2),
    ]
    for label, run in runs.items():
        metrics = run["metrics"]
        cells = [_with_interval(metrics, m) for m in metric_names]
        lines.append(
            f"| {label} | {metrics.get('n')} | {metrics.get('errors')} | "
            + " | ".join(cells)
            + f" | {_fmt(metrics.get('latency_p50_ms'))} | "
            f"{_fmt(metrics.get('latency_p95_ms'))} |"
        )
    board = result.get("leaderboard") or []
    if board:
        lines += [
            "",
            f"## Leaderboard ({result.get('battles')} battles)",
            "",
            "| rank | model | rating | 95% interval | online Elo |",
            "|---:|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['rank']} | {r['model']} | {r['rating']:.0f} | "
            f"{r['low']:.0f} – {r['high']:.0f} | {r['elo']:.0f} |"
            for r in board
        ]
    for key, rows in _breakdown_rows(runs).items():
        lines += [
            "",
            f"## By {key}",
            "",
            f"| model | {key} | n | valid JSON | similarity |",
            "|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['model']} | {r['group']} | {r['n']} | {r['cells']['valid_json']} | "
            f"{r['cells']['similarity']} |"
            for r in rows
        ]
    for note in result.get("notes") or []:
        lines += ["", f"_{note}_"]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def _with_interval(metrics: Mapping[str, Any], name: str) -> str:
    value = metrics.get(name)
    interval = (metrics.get("intervals") or {}).get(name)
    if value is None:
        return "–"
    if interval and None not in interval:
        return f"{value:.3f} [{interval[0]:.3f}–{interval[1]:.3f}]"
    return f"{value:.3f}"


def _breakdown_rows(runs: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for label, run in runs.items():
        for key, groups in (run["metrics"].get("breakdown") or {}).items():
            for group, estimates in groups.items():
                cells = {
                    score: "–"
                    if est.get("mean") is None
                    else f"{est['mean']:.3f} [{est['low']:.2f}–{est['high']:.2f}]"
                    for score, est in estimates.items()
                }
                n = max((est.get("n") or 0) for est in estimates.values()) if estimates else 0
                rows.setdefault(key, []).append(
                    {"model": label, "group": group, "n": n, "cells": _Cells(cells)}
                )
    return rows


class _Cells(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "–"


def _worst(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    scored = sorted(rows, key=lambda r: (r["scores"].get("similarity") or 0.0, r["index"] or 0))
    worst = []
    for row in scored[:WORST_EXAMPLES]:
        prompt = " / ".join(
            str(m.get("content", ""))[:200] for m in row["prompt"] if m.get("role") == "user"
        )
        worst.append(
            {
                "index": row["index"],
                "similarity": row["scores"].get("similarity"),
                "error": row["scores"].get("error"),
                "prompt": prompt,
                "diff": json_diff(row["output"], row["reference"] or ""),
            }
        )
    return worst


def json_diff(output: str, reference: str) -> str:
    """A side-by-side HTML table of the output against the reference, JSON pretty-printed
    (keys sorted) so the diff shows content, not formatting."""

    def lines(text: str) -> list[str]:
        parsed = parse_json(text)
        shown = (
            json.dumps(parsed.value, indent=2, sort_keys=True, ensure_ascii=False)
            if parsed.ok
            else text
        )
        return shown.splitlines() or [""]

    table = difflib.HtmlDiff(wrapcolumn=70).make_table(
        lines(output), lines(reference), fromdesc="output", todesc="reference", context=False
    )
    return table if table else html.escape(output)


def _png(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _metric_plot(runs: Mapping[str, Any], metric_names: Sequence[str]) -> str | None:
    plt = _pyplot()
    shown = [
        m for m in metric_names if all(0 <= (r["metrics"].get(m) or 0) <= 1 for r in runs.values())
    ]
    if plt is None or not runs or not shown:
        return None
    labels = list(runs)
    width = 0.8 / len(labels)
    figure, axis = plt.subplots(figsize=(max(6, 1.5 * len(shown) + 2), 3.6))
    for index, label in enumerate(labels):
        metrics = runs[label]["metrics"]
        values = [metrics.get(m) or 0.0 for m in shown]
        intervals = [
            (metrics.get("intervals") or {}).get(m) or [v, v]
            for m, v in zip(shown, values, strict=True)
        ]
        errors = [
            [
                max(0.0, v - (lo if lo is not None else v))
                for v, (lo, _) in zip(values, intervals, strict=True)
            ],
            [
                max(0.0, (hi if hi is not None else v) - v)
                for v, (_, hi) in zip(values, intervals, strict=True)
            ],
        ]
        positions = [i + (index - (len(labels) - 1) / 2) * width for i in range(len(shown))]
        axis.bar(positions, values, width, yerr=errors, capsize=3, label=label)
    axis.set_xticks(range(len(shown)), shown, rotation=15)
    axis.set_ylim(0, 1.1)
    axis.legend(fontsize=8)
    axis.set_title("metrics with bootstrap 95% intervals")
    axis.grid(axis="y", alpha=0.3)
    return _png(figure)


def _rating_plot(board: Sequence[Mapping[str, Any]]) -> str | None:
    plt = _pyplot()
    if plt is None or not board:
        return None
    figure, axis = plt.subplots(figsize=(6, 0.5 * len(board) + 1.5))
    for position, row in enumerate(reversed(board)):
        axis.errorbar(
            row["rating"],
            position,
            xerr=[[row["rating"] - row["low"]], [row["high"] - row["rating"]]],
            fmt="o",
            capsize=4,
        )
    axis.set_yticks(range(len(board)), [r["model"] for r in reversed(board)])
    axis.set_xlabel("Bradley–Terry rating (Elo scale), 95% interval")
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)
