"""Finished tasks are deleted after ``state.keep_finished_tasks``: an index to find them.

Revision ID: 0010_task_retention
Revises: 0009_instances
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_task_retention"
down_revision: str | None = "0009_instances"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_finished_at", table_name="tasks")
