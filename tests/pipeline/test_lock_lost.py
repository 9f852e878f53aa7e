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

import pytest
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from syncd.state.db import Database
from syncd.state.models import KeyPair, KmsKey, Run, Task, TaskStatus
from tests.conftest import admin_connection

from .conftest import Deployment, gmail_state, sandbox_users

USERS = sandbox_users(6)
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


def _passes(url: str) -> int:
    database = Database.open(url)
    try:
        with database.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Run)) or 0)
    finally:
        database.close()


def _second_pass(deploy: Deployment, taken: int) -> subprocess.CompletedProcess[str]:
    """``syncd sync --once`` as soon as the run lock is free (the server may take a moment);
    once it holds the lock (a pass more than ``taken`` began) the sandbox runs at full speed."""
    url = deploy.config.state.url
    deadline = time.monotonic() + WAIT
    while True:
        second = _start(deploy, "sync", "--once")
        _wait(lambda p=second: _passes(url) > taken or p.poll() is not None, "the second pass")
        if _passes(url) > taken:
            deploy.admin("POST", "faults", {})
        out, errors = second.communicate(timeout=WAIT)
        if second.returncode != 3 or "holds the run lock" not in errors:
            return subprocess.CompletedProcess(second.args, second.returncode, out, errors)
        if time.monotonic() > deadline:
            pytest.fail(f"the run lock was never freed: {errors}")
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


def _while_a_pass_runs(
    deploy: Deployment, meanwhile: Callable[[int], subprocess.CompletedProcess[str]]
) -> tuple[subprocess.CompletedProcess[str], int, str]:
    """Start a pass; once it has done a first user, slow the sandbox down (every Google call
    of the rest of the pass takes 1.5 s) and call ``meanwhile(its pid)``, which sets the
    sandbox back to full speed. Returns what ``meanwhile`` returned, and the first pass's exit
    code and stderr."""
    url = deploy.config.state.url
    deploy.set_users(USERS)
    deploy.update_config(pipeline={"workers": 2})
    deploy.admin("POST", "faults", {"latency_ms": 300})
    first = _start(deploy, "sync", "--once")
    try:
        _wait(lambda: _done_tasks(url) >= 1 or first.poll() is not None, "a first user done")
        deploy.admin("POST", "faults", {"latency_ms": 1500})
        assert first.poll() is None, "the first pass ended too soon: slow the sandbox more"
        second = meanwhile(first.pid)
        _, errors = first.communicate(timeout=WAIT)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=10)
    deploy.admin("POST", "faults", {})
    return second, first.returncode, errors


def _lose_the_lock_mid_pass(deploy: Deployment, lose: Callable[[int], None]) -> None:
    def lose_then_start_another(pid: int) -> subprocess.CompletedProcess[str]:
        taken = _passes(deploy.config.state.url)
        lose(pid)
        return _second_pass(deploy, taken)

    second, code, errors = _while_a_pass_runs(deploy, lose_then_start_another)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in errors, errors
    assert code == 3, errors
    [line] = [line for line in errors.splitlines() if line.startswith("syncd:")]
    assert line.startswith(LOST_LINE) and " was lost (" in line, errors
    assert line.endswith("): this pass stops at its checkpoint"), line

    final = deploy.syncd("sync", "--once")
    assert final.returncode == 0, final.stderr
    _assert_provisioned_once(deploy, deploy.config.state.url)


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_sqlite_lock_file_removed_mid_pass_while_a_second_pass_starts(
    deployment: Deployment,
) -> None:
    lock_file = Path(f"{make_url(deployment.config.state.url).database}.lock")
    _lose_the_lock_mid_pass(deployment, lambda _pid: lock_file.unlink())


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
def test_postgresql_lock_session_terminated_mid_pass_while_a_second_pass_starts(
    deployment: Deployment,
) -> None:
    url = deployment.config.state.url

    def terminate(pid: int) -> None:
        with admin_connection(url) as admin:
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
    with admin_connection(url) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET idle_session_timeout = '1s'").format(
                sql.Identifier(database)
            )
        )

    def wait_then_start_another(_pid: int) -> subprocess.CompletedProcess[str]:
        time.sleep(1.2)  # the server has ended every session idle for a second by now
        second = deployment.syncd("sync", "--once")
        deployment.admin("POST", "faults", {})
        return second

    second, code, errors = _while_a_pass_runs(deployment, wait_then_start_another)
    assert second.returncode == 3 and "holds the run lock" in second.stderr, second.stderr
    assert code == 0, errors
    assert "Traceback" not in errors, errors
    _assert_provisioned_once(deployment, url)
