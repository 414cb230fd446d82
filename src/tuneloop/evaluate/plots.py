"""Comparison charts: one look tells whether the new version beats the old one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

BAR_METRICS = (("valid_json_rate", "valid JSON"), ("similarity", "structural similarity"))


def save_comparison_plot(
    models: dict[str, dict[str, Any]],
    path: Path,
    *,
    title: str,
    metrics: Sequence[tuple[str, str]] = BAR_METRICS,
) -> Path | None:
    """Grouped bars of ``metrics`` (key, legend label) per model or group of results; None
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = list(models)
    width = 0.8 / len(metrics)
    figure, axis = plt.subplots(figsize=(1.6 * len(labels) + 2.5, 3.5), dpi=100)
    for index, (key, name) in enumerate(metrics):
        values = [models[label].get(key) or 0.0 for label in labels]
        positions = [i + (index - (len(metrics) - 1) / 2) * width for i in range(len(labels))]
        bars = axis.bar(positions, values, width, label=name)
        axis.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8)
    axis.set_xticks(range(len(labels)), labels)
    axis.set_ylim(0, 1.15)
    axis.set_title(title)
    axis.legend(loc="upper left", fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
