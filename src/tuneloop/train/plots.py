"""Loss curves as PNG: people read a curve faster than a column of numbers."""

from __future__ import annotations

from pathlib import Path


def save_loss_plot(curve: list[tuple[int, float]], path: Path, *, title: str) -> Path | None:
    """Write the training loss curve; returns None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.plot([step for step, _ in curve], [loss for _, loss in curve], color="#3b6ea8")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
