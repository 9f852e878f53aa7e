"""Directory scope: users.missing_since (the deprovision grace period) and skipped_entries.

Before this revision a pass whose deprovisions were blocked still marked those users out of
scope. Users out of scope who still hold credentials and have no deprovision under way are
such users: they are put back in scope, so the next pass counts them among the managed users
(and their grace period starts at its first read).

Revision ID: 0002_scope
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_scope"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "skipped_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("entry", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_skipped_entries"),
        sa.UniqueConstraint("source", "entry", name="uq_skipped_entries_source"),
    )
    op.execute(_BLOCKED_OUT_OF_SCOPE)


_BLOCKED_OUT_OF_SCOPE = sa.text(
    """
    UPDATE users SET in_scope = :yes
    WHERE in_scope = :no
    AND EXISTS (SELECT 1 FROM key_pairs WHERE key_pairs.user_id = users.id
                AND key_pairs.status IN ('pending', 'active', 'superseded'))
    AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.user_id = users.id
                    AND tasks.kind = 'deprovision'
                    AND tasks.status IN ('pending', 'running', 'failed'))
    """
).bindparams(yes=True, no=False)


def downgrade() -> None:
    op.drop_table("skipped_entries")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("missing_since")
