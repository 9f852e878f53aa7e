"""Finished tasks older than state.keep_finished_tasks are deleted by a pass
(syncd.state.retention); open ones and the audit log stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from syncd.app.passes import sync_pass
from syncd.domain import TaskStatus
from syncd.state.db import Database
from syncd.state.models import AuditEvent, Task
from syncd.state.retention import prune_finished_tasks

from .conftest import Deployment, sandbox_users


def _statuses(database: Database) -> list[TaskStatus]:
    with database.sessions() as session:
        return sorted(session.scalars(select(Task.status)))


def _age_finished(database: Database, days: int) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            update(Task)
            .where(Task.finished_at.is_not(None))
            .values(finished_at=datetime.now(UTC) - timedelta(days=days))
        )


def _audit_count(database: Database) -> int:
    with database.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_a_pass_deletes_tasks_finished_longer_ago_than_the_setting(
    deployment: Deployment,
) -> None:
    deployment.set_users(sandbox_users(3))
    assert not sync_pass(deployment.app()).failures
    database = Database.open(deployment.config.state.url)
    try:
        assert _statuses(database) == [TaskStatus.DONE] * 3
        # Finished 89 days ago: kept by the default of 90 days.
        _age_finished(database, 89)
        sync_pass(deployment.app())
        assert _statuses(database) == [TaskStatus.DONE] * 3
        # 91 days ago: deleted by the next pass, the audit log untouched.
        _age_finished(database, 91)
        audited = _audit_count(database)
        sync_pass(deployment.app())
        assert _statuses(database) == []
        assert _audit_count(database) >= audited
    finally:
        database.close()


def test_null_keeps_every_finished_task(deployment: Deployment) -> None:
    deployment.update_config(state={"keep_finished_tasks": None})
    deployment.set_users(sandbox_users(2))
    sync_pass(deployment.app())
    database = Database.open(deployment.config.state.url)
    try:
        _age_finished(database, 3650)
        sync_pass(deployment.app())
        assert _statuses(database) == [TaskStatus.DONE] * 2
    finally:
        database.close()


@pytest.mark.parametrize("migrated_db_url", ["sqlite", "postgresql"], indirect=True)
def test_pruning_takes_the_oldest_first_up_to_the_limit_and_never_an_open_task(
    deployment: Deployment,
) -> None:
    deployment.set_users(sandbox_users(4))
    sync_pass(deployment.app())
    database = Database.open(deployment.config.state.url)
    now = datetime.now(UTC)
    try:
        with database.engine.begin() as connection:
            ids = sorted(connection.execute(select(Task.id)).scalars())
            for age, task_id in zip((400, 300, 200, 100), ids, strict=True):
                connection.execute(
                    update(Task)
                    .where(Task.id == task_id)
                    .values(finished_at=now - timedelta(days=age))
                )
            # An open task is never deleted, whatever its dates say.
            connection.execute(
                update(Task).where(Task.id == ids[1]).values(status=TaskStatus.FAILED)
            )
            assert prune_finished_tasks(connection, now - timedelta(days=150), limit=1) == 1
            left = sorted(connection.execute(select(Task.id)).scalars())
            assert left == ids[1:]
            assert prune_finished_tasks(connection, now - timedelta(days=150)) == 1
            left = sorted(connection.execute(select(Task.id)).scalars())
            assert left == [ids[1], ids[3]]
    finally:
        database.close()
