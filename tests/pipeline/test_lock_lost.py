"""A pass that loses its run lock mid-pass while a second pass starts: real processes, the
sandbox slowed down, the lock lost as in production (the SQLite lock file removed, the
PostgreSQL session that holds the advisory lock terminated or timed out by the server).

In the end every user has exactly one enabled key pair and an identity on it, every KMS key is
accounted for, no task is left running, and the pass that lost the lock said so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from syncd.state.db import Database
from syncd.state.models import KeyPair, KmsKey, Task, TaskStatus

from .conftest import Deployment, gmail_state, sandbox_users

USERS = sandbox_users(8)
WAIT = 90.0
LOST_LINE = "syncd: the run lock on "


def _start(deploy: Deployment, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(deploy.config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "SYNCD_CRASH_AT"},
    )


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def _done_tasks(url: str) -> int:
    database = Database.open(url)
    try:
        with database.sessions() as session:
            count = session.scalar(
                select(func.count()).select_from(Task).where(Task.status == TaskStatus.DONE)
            )
    finally:
        database.close()
    return int(count or 0)


def _second_pass(deploy: Deployment) -> subprocess.CompletedProcess[str]:
    """``syncd sync --once`` as soon as the run lock is free (the server may take a moment)."""
    deadline = time.monotonic() + WAIT
    while True:
        second = deploy.syncd("sync", "--once")
        if second.returncode != 3 or "holds the run lock" not in second.stderr:
            return second
        if time.monotonic() > deadline:
            pytest.fail(f"the run lock was never freed: {second.stderr}")
        time.sleep(0.2)


def _assert_provisioned_once(deploy: Deployment, url: str) -> None:
    database = Database.open(url)
    try:
        with database.sessions() as session:
            unfinished = session.scalars(
                select(Task).where(Task.status.in_((TaskStatus.PENDING, TaskStatus.RUNNING)))
            ).all()
            recorded = {
                kp.kms_private_key_id
                for kp in session.scalars(select(KeyPair))
                if kp.kms_private_key_id is not None
            }
            kms_keys = set(session.scalars(select(KmsKey.id).where(KmsKey.label.like("syncd:%"))))
    finally:
        database.close()
    assert not unfinished, [(t.id, t.status, t.next_step) for t in unfinished]
    assert kms_keys == recorded, "KMS keys that no key pair generation accounts for"
    for email in USERS:
        keypairs, identity = gmail_state(deploy, email)
        enabled = [kp for kp in keypairs if kp["enablementState"] == "enabled"]
        assert len(keypairs) == 1 and len(enabled) == 1, f"{email}: {len(keypairs)} key pairs"
        assert identity is not None and identity["primaryKeyPairId"] == enabled[0]["keyPairId"]


def _lose_the_lock_mid_pass(deploy: Deployment, lose: Callable[[int], None]) -> None:
    url = deploy.config.state.url
    deploy.set_users(USERS)
    deploy.update_config(pipeline={"workers": 2})
    deploy.admin("POST", "faults", {"latency_ms": 500})
    first = _start(deploy, "sync", "--once")
    try:
        _wait(lambda: _done_tasks(url) >= 1 or first.poll() is not None, "a first user done")
        assert first.poll() is None, "the first pass ended before its lock was lost"
        lose(first.pid)
        second = _second_pass(deploy)
        _, errors = first.communicate(timeout=WAIT)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=10)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in errors, errors
    assert first.returncode == 3, errors
    [line] = [line for line in errors.splitlines() if line.startswith("syncd:")]
    assert line.startswith(LOST_LINE) and " was lost (" in line, errors
    assert line.endswith("): this pass stops at its checkpoint"), line

    deploy.admin("POST", "faults", {})
    final = deploy.syncd("sync", "--once")
    assert final.returncode == 0, final.stderr
    _assert_provisioned_once(deploy, url)


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_sqlite_lock_file_removed_mid_pass_while_a_second_pass_starts(
    deployment: Deployment,
) -> None:
    lock_file = Path(f"{make_url(deployment.config.state.url).database}.lock")
    _lose_the_lock_mid_pass(deployment, lambda _pid: lock_file.unlink())


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database,
        autocommit=True,
    )


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
def test_postgresql_lock_session_terminated_mid_pass_while_a_second_pass_starts(
    deployment: Deployment,
) -> None:
    url = deployment.config.state.url

    def terminate(pid: int) -> None:
        with _admin(url) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE %s",
                (f"syncd-run pid={pid} %",),
            ).fetchall()
        assert ended == [(True,)], "the lock holder's session was not found"

    _lose_the_lock_mid_pass(deployment, terminate)


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
def test_postgresql_idle_session_timeout_does_not_end_the_run_lock(
    deployment: Deployment,
) -> None:
    url = deployment.config.state.url
    database = make_url(url).database
    assert database is not None
    with _admin(url) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET idle_session_timeout = '1s'").format(
                sql.Identifier(database)
            )
        )
    deployment.set_users(USERS)
    deployment.update_config(pipeline={"workers": 2})
    deployment.admin("POST", "faults", {"latency_ms": 800})
    first = _start(deployment, "sync", "--once")
    try:
        _wait(lambda: _done_tasks(url) >= 1 or first.poll() is not None, "a first user done")
        time.sleep(1.2)  # the server has ended every session idle for a second by now
        assert first.poll() is None, "the first pass ended too soon: slow the sandbox more"
        second = deployment.syncd("sync", "--once")
        _, errors = first.communicate(timeout=WAIT)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=10)
    assert second.returncode == 3 and "holds the run lock" in second.stderr, second.stderr
    assert first.returncode == 0, errors
    assert "Traceback" not in errors, errors
    deployment.admin("POST", "faults", {})
    _assert_provisioned_once(deployment, url)
