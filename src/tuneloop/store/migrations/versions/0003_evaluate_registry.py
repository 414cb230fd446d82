"""judge answers, stage audit log, resumable eval runs, one production version per task

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:50:00

Judging the same answers twice should cost nothing (judge_answers); every stage change is
recorded with who, why and the eval run behind it (stage_changes); an interrupted eval run
resumes from its stored results (eval_runs.status, resume_key, eval_results.example_index);
and the database itself refuses a second production version of a task.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "judge_answers",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("judge", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_judge_answers")),
    )
    op.create_table(
        "stage_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(length=20), nullable=False),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("traffic_percent", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("eval_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["eval_run_id"], ["eval_runs.id"], name=op.f("fk_stage_changes_eval_run_id_eval_runs")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_stage_changes_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_changes")),
    )
    op.create_index(op.f("ix_stage_changes_task"), "stage_changes", ["task"], unique=False)
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=20), server_default="complete", nullable=False)
        )
        batch.add_column(sa.Column("resume_key", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_eval_runs_resume_key"), ["resume_key"], unique=False)
    with op.batch_alter_table("eval_results") as batch:
        batch.add_column(sa.Column("example_index", sa.Integer(), nullable=True))
    op.create_index(
        "uq_model_versions_task_production",
        "model_versions",
        ["task"],
        unique=True,
        sqlite_where=sa.text("stage = 'production'"),
        postgresql_where=sa.text("stage = 'production'"),
    )


def downgrade() -> None:
    op.drop_index("uq_model_versions_task_production", table_name="model_versions")
    with op.batch_alter_table("eval_results") as batch:
        batch.drop_column("example_index")
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_index(batch.f("ix_eval_runs_resume_key"))
        batch.drop_column("resume_key")
        batch.drop_column("status")
    op.drop_index(op.f("ix_stage_changes_task"), table_name="stage_changes")
    op.drop_table("stage_changes")
    op.drop_table("judge_answers")
