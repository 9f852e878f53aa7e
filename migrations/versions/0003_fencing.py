"""Fencing of the run lock: a token incremented at each acquisition, and task claims.

``run_lock`` holds one row whose token every pass increments when it takes the run lock; each
checkpoint proves in its own transaction that the token is still its own. ``tasks.claimed_by``
(the token of the pass running the task) and ``tasks.lease_until`` keep a task from being run
by two processes while the one that lost the lock may still be inside an external call.

Revision ID: 0003_fencing
Revises: 0002_scope
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_fencing"
down_revision: str | None = "0002_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_lock = op.create_table(
        "run_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_lock"),
    )
    op.bulk_insert(run_lock, [{"id": 1, "token": 0, "holder": "", "acquired_at": None}])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("claimed_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
    op.drop_table("run_lock")
