"""Fencing and task claims against the real state store (SQLite and PostgreSQL): a pass whose
run-lock token was taken by another records nothing more, and a running task another pass
still claims is held, not run twice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from syncd.errors import LockLostError
from syncd.pipeline import plan_state, tasks
from syncd.pipeline.claims import Claim, ForeignClaim, claim_holds, hold_claimed
from syncd.pipeline.enqueue import enqueue
from syncd.pipeline.steps import Outcome
from syncd.plan import Action, ActionKind, Hold, Plan
from syncd.state import fencing
from syncd.state.db import Database
from syncd.state.lock import pid_namespace
from syncd.state.models import Run, Task, TaskStatus
from syncd.state.runs import start_run

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


@pytest.fixture
def database(migrated_db_url: str) -> Iterator[Database]:
    database = Database.open(migrated_db_url)
    yield database
    database.close()


def _take(database: Database) -> int:
    with database.engine.begin() as connection:
        return fencing.take(connection, NOW)


def _task(database: Database, email: str) -> tuple[int, int]:
    """A new provision task for ``email`` and the run that queued it."""
    with database.transaction() as session:
        run_id = start_run(session, "sync", NOW)
        action = Action(email, ActionKind.PROVISION, "test", "provision", f"id-{email}")
        [task_id] = enqueue(session, [action], run_id, NOW)
    return task_id, run_id


def _row(database: Database, task_id: int) -> tuple[TaskStatus, str | None, int | None, object]:
    with database.sessions() as session:
        task = session.get_one(Task, task_id)
        return task.status, task.next_step, task.claimed_by, task.lease_until


def test_each_acquisition_takes_a_new_token(database: Database) -> None:
    first, second = _take(database), _take(database)
    assert second == first + 1
    with database.engine.begin() as connection:
        fencing.prove(connection, second)
        with pytest.raises(LockLostError) as raised:
            fencing.prove(connection, first)
    message = str(raised.value)
    assert message == (
        f"the run lock on {database.display_url} was lost (another syncd process, pid "
        f"{os.getpid()} on host {socket.gethostname()}, took it): this pass stops at its "
        "checkpoint"
    )


def test_a_stale_token_records_nothing(database: Database) -> None:
    mine = Claim(_take(database), LEASE)
    task_id, run_id = _task(database, "alice@example.com")
    with database.engine.begin() as connection:
        work, step = tasks.start(connection, task_id, run_id, mine, NOW)
    # A provisioning first looks for credentials made by hand (policy.existing_credentials).
    assert step == "check_existing"
    assert _row(database, task_id) == (
        TaskStatus.RUNNING, "check_existing", mine.token, NOW + LEASE
    )  # fmt: skip

    _take(database)  # another process took the run lock
    later = NOW + timedelta(seconds=5)
    outcome = Outcome().update(work.target.id if work.target else 0, kms_label="x")
    with pytest.raises(LockLostError, match="was lost"), database.engine.begin() as connection:
        tasks.record_step(connection, work, "check_existing", outcome, later, run_id, mine)
    with pytest.raises(LockLostError), database.transaction() as session:
        tasks.fail(session, task_id, "boom", later, run_id, 60.0, 3600.0, mine)
    with pytest.raises(LockLostError), database.engine.begin() as connection:
        tasks.renew(connection, task_id, mine, later)
    assert _row(database, task_id) == (
        TaskStatus.RUNNING, "check_existing", mine.token, NOW + LEASE
    )  # fmt: skip

    other_id, _ = _task(database, "bob@example.com")
    with pytest.raises(LockLostError), database.engine.begin() as connection:
        tasks.start(connection, other_id, run_id, mine, later)
    assert _row(database, other_id) == (TaskStatus.PENDING, "check_existing", None, None)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def test_a_live_claim_of_another_pass_holds_the_user(database: Database) -> None:
    theirs = Claim(_take(database), LEASE)
    task_id, run_id = _task(database, "alice@example.com")
    with database.engine.begin() as connection:
        tasks.start(connection, task_id, run_id, theirs, NOW)
    mine = _take(database)

    def held(token: int | None, now: datetime = NOW) -> dict[str, str]:
        with database.sessions() as session:
            return plan_state.held_by_others(session, token, now)

    # The claiming process runs on this host and is alive (it is this test).
    [(email, reason)] = held(mine).items()
    assert email == "alice@example.com"
    assert reason == (
        f"its task is claimed by pass {run_id} (pid {os.getpid()} on host "
        f"{socket.gethostname()}) until 2026-12-02 12:10:00Z: left alone until then, then "
        "resumed from its checkpoint"
    )
    assert held(None) == held(mine)  # what `syncd plan` shows
    assert held(theirs.token) == {}  # a pass never holds against its own claim
    assert held(mine, NOW + LEASE + timedelta(seconds=1)) == {}  # the lease ended

    # Whether a pid is gone can only be told in its own kernel and PID namespace, whatever
    # the hostnames say (containers and cloned machines share those).
    for elsewhere in ("another-boot-id:4026531836", None):  # None: recorded before it was kept
        with database.engine.begin() as connection:
            connection.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(host=socket.gethostname(), pid=_dead_pid(), pid_namespace=elsewhere)
            )
        assert "(pid" in held(mine)["alice@example.com"]  # wait for the lease
    with database.engine.begin() as connection:
        connection.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(host="another-host", pid=_dead_pid(), pid_namespace=pid_namespace())
        )
    assert held(mine) == {}  # the claiming process is gone: resumed at once

    with database.engine.begin() as connection:
        tasks.release(connection, task_id, theirs.token)
    assert _row(database, task_id)[3] is None


def test_hold_claimed_moves_actions_to_holds() -> None:
    actions = tuple(
        Action(email, ActionKind.RESUME, "unfinished", "provision")
        for email in ("a@example.com", "b@example.com")
    )
    the_plan = Plan(actions, (Hold("c@example.com", "other"),))
    assert hold_claimed(the_plan, {}) is the_plan
    changed = hold_claimed(the_plan, {"b@example.com": "claimed"})
    assert [a.email for a in changed.actions] == ["a@example.com"]
    assert changed.held == (Hold("c@example.com", "other"), Hold("b@example.com", "claimed"))


@pytest.mark.parametrize(
    ("token", "until", "gone", "holds"),
    [
        (2, NOW + LEASE, False, True),
        (1, NOW + LEASE, False, False),  # our own claim
        (2, NOW, False, False),  # the lease ended
        (2, NOW + LEASE, True, False),  # the claiming process is known dead
    ],
)
def test_claim_holds(token: int, until: datetime, gone: bool, holds: bool) -> None:
    claim = ForeignClaim("a@example.com", token, until, 7, "pid 1 on host h", gone)
    assert claim_holds(claim, 1, NOW) is holds
