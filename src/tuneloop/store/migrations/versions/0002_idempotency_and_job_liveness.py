"""idempotency key on interactions; job heartbeat and cancel request; dataset purge mark

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:50:00

Importing the same calls twice must not store them twice, so each interaction carries the
caller's id or a content hash under a unique index. Rows stored before this migration have no
key (NULLs never collide). Jobs get a heartbeat (a dead process shows as stale), the pid and host
that run them, and a cancel request the running process polls. Datasets get a mark for versions
whose rows were removed after they were built.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_interactions_idempotency_key"), ["idempotency_key"], unique=True
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("host", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested_at")
        batch_op.drop_column("host")
        batch_op.drop_column("pid")
        batch_op.drop_column("heartbeat_at")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_interactions_idempotency_key"))
        batch_op.drop_column("idempotency_key")
