"""Members of a shared group and passes record the kernel and PID namespace their pid belongs
to: hosts that share a hostname (containers, cloned VMs) no longer take each other's processes
for dead.

Revision ID: 0011_instance_pid_namespace
Revises: 0010_task_retention
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_instance_pid_namespace"
down_revision: str | None = "0010_task_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TABLES = ("instances", "runs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("pid_namespace", sa.String(length=100), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pid_namespace")
