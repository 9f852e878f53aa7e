"""Master key check value: the local KMS records which master key sealed its keys.

Revision ID: 0004_key_check
Revises: 0003_fencing
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_key_check"
down_revision: str | None = "0003_fencing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No row is written here: the migration never sees the master key. `syncd init` (or, for
    # a store from before this revision, the first use of the key) records the value.
    op.create_table(
        "key_checks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("check_value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_key_checks"),
    )


def downgrade() -> None:
    op.drop_table("key_checks")
