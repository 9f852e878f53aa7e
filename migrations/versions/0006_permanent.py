"""Permanent task failures: ``tasks.permanent`` marks a task that failed for a reason retrying
will not fix (a PermanentError); it has no next attempt and the plan holds its user until a
resync.

Revision ID: 0006_permanent
Revises: 0005_key_format
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_permanent"
down_revision: str | None = "0005_key_format"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("permanent", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("tasks", "permanent")
