"""What the state store forgets: finished tasks older than ``state.keep_finished_tasks``.

Every verification, renewal and provisioning leaves a task row; at 100,000 users with a weekly
verification that is five million rows a year. Nothing reads a finished task (the plan, the
queue and the reports read open ones; the audit log keeps what each task did), so a pass
deletes those finished longer ago than the setting, at most PRUNE_PER_PASS at a time so that a
first pass after an upgrade stays short.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, select

from syncd.domain import TaskStatus
from syncd.state.models import Task

PRUNE_PER_PASS = 20_000

_OLD_FINISHED = (
    select(Task.id)
    .where(
        Task.finished_at < bindparam("cutoff"),
        Task.status.in_((TaskStatus.DONE, TaskStatus.CANCELLED)),
    )
    .order_by(Task.finished_at)
    .limit(bindparam("limit"))
    .scalar_subquery()
)


def prune_finished_tasks(
    connection: Connection, cutoff: datetime, limit: int = PRUNE_PER_PASS
) -> int:
    """Delete up to ``limit`` tasks finished (done or cancelled) before ``cutoff``; returns
    how many were deleted."""
    result = connection.execute(
        delete(Task).where(Task.id.in_(_OLD_FINISHED)), {"cutoff": cutoff, "limit": limit}
    )
    return int(result.rowcount)
