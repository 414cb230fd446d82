"""Deleting a tenant's data from everything tuneloop wrote: a deletion request, or an opt-out.

Order matters for a crash: dataset files are rewritten first (the memberships that find them
are deleted with the interactions), then the rows go in one transaction. Running it again
after a crash finishes the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select

from tuneloop.curate import DatasetPurge, purge_examples
from tuneloop.store import EvalResult, Feedback, Interaction, Store


@dataclass
class ForgetReport:
    """What a deletion removed, and the trained models that still saw the data."""

    tenant: str
    interactions: int = 0
    feedback: int = 0
    eval_results: int = 0
    datasets: DatasetPurge = field(default_factory=DatasetPurge)

    def lines(self) -> list[str]:
        """The report as short lines for the CLI (names and counts, never the data)."""
        purge = self.datasets
        lines = [
            f"deleted {self.interactions} interaction(s), {self.feedback} feedback event(s), "
            f"{self.eval_results} eval result(s) of tenant {self.tenant!r}",
        ]
        if purge.datasets:
            lines.append(
                f"removed {purge.examples} example(s) from dataset version(s) "
                f"{', '.join(purge.datasets)}; {len(purge.files)} file(s) rewritten"
            )
        lines.extend(
            f"deleted {path} (not line-aligned; rebuild to re-export)"
            for path in purge.removed_files
        )
        if purge.models:
            lines.append(
                f"trained on that data: {', '.join(purge.models)}; retrain them on a rebuilt "
                "dataset to remove what they learned"
            )
        return lines


def forget_tenant(store: Store, tenant: str, *, workspace: Path | None = None) -> ForgetReport:
    """Delete the tenant's interactions, their feedback and eval results, and remove their
    examples from exported dataset files (``workspace`` resolves their folders). Idempotent."""
    report = ForgetReport(tenant)
    with store.session() as session:
        ids = list(session.scalars(select(Interaction.id).where(Interaction.tenant == tenant)))
    report.datasets = purge_examples(store, ids, workspace=workspace)
    theirs = select(Interaction.id).where(Interaction.tenant == tenant)
    with store.session() as session:
        report.feedback = (
            session.scalar(
                select(func.count())
                .select_from(Feedback)
                .where(Feedback.interaction_id.in_(theirs))
            )
            or 0
        )
        report.eval_results = _rowcount(
            session.execute(delete(EvalResult).where(EvalResult.interaction_id.in_(theirs)))
        )
        report.interactions = _rowcount(
            session.execute(
                delete(Interaction).where(Interaction.tenant == tenant),
                execution_options={"synchronize_session": False},
            )
        )
    return report


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
