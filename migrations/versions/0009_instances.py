"""Several syncd instances sharing one PostgreSQL state store (issue 16).

``instances``: one row per running member of a shared group (``state.shared``); its id is the
token its task claims carry (``tasks.claimed_by``), starting far above any run-lock token, and
``heartbeat_at`` shows it alive.

Revision ID: 0009_instances
Revises: 0008_lifecycle
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_instances"
down_revision: str | None = "0008_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANCE_TOKENS_START = 1_000_000_000


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), sa.Identity(start=INSTANCE_TOKENS_START), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )


def downgrade() -> None:
    op.drop_table("instances")
