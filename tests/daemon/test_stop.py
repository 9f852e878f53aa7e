"""SIGTERM during a pass, and the run lock between the daemon and a hand-run command."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from syncd.state.db import Database
from syncd.state.lock import RunLock
from syncd.state.models import KeyPair, KeyPairStatus, KmsKey, Task, TaskStatus, User

from .conftest import (
    Deployment,
    RunningDaemon,
    finished_passes,
    gmail_state,
    sandbox_users,
)

USERS = sandbox_users(20)


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


def _assert_nothing_half_done(deploy: Deployment, url: str) -> int:
    """Gmail and the KMS hold exactly what the state store recorded; returns unfinished tasks."""
    database = Database.open(url)
    try:
        with database.sessions() as session:
            recorded_keys = {
                kp.kms_private_key_id
                for kp in session.scalars(select(KeyPair))
                if kp.kms_private_key_id is not None
            }
            kms_keys = set(session.scalars(select(KmsKey.id).where(KmsKey.label.like("syncd:%"))))
            uploads: dict[str, set[str]] = {}
            active: set[str] = set()
            for kp, email in session.execute(select(KeyPair, User.email).join(User)):
                if kp.gmail_key_pair_id is not None:
                    uploads.setdefault(email, set()).add(kp.gmail_key_pair_id)
                if kp.status is KeyPairStatus.ACTIVE:
                    active.add(email)
            unfinished = list(session.scalars(select(Task).where(Task.status != TaskStatus.DONE)))
            assert all(t.status in (TaskStatus.PENDING, TaskStatus.RUNNING) for t in unfinished)
    finally:
        database.close()
    assert kms_keys == recorded_keys, "a KMS key no key pair records (create_key half-done)"
    for email in USERS:
        keypairs, identity = gmail_state(deploy, email)
        in_gmail = {kp["keyPairId"] for kp in keypairs}
        assert in_gmail == uploads.get(email, set()), f"{email}: upload half-done"
        assert (identity is not None) == (email in active), f"{email}: identity half-done"
    return len(unfinished)


def test_sigterm_during_a_pass_stops_at_checkpoints_and_the_next_start_resumes(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    deploy = daemon_deployment
    url = deploy.config.state.url
    deploy.set_users(USERS)
    deploy.update_config(pipeline={"workers": 2})
    deploy.admin("POST", "faults", {"latency_ms": 300})
    daemon = start_daemon()
    daemon.wait_until(lambda: _done_tasks(url) >= 1, "a first user provisioned")

    # While the daemon's pass holds the run lock, a hand-run pass loses and says so.
    manual = deploy.syncd("sync", "--once")
    assert manual.returncode == 3, manual.stdout + manual.stderr
    assert "holds the run lock" in manual.stderr
    assert _done_tasks(url) < len(USERS), "the pass ended before SIGTERM: slow the sandbox more"

    daemon.send(signal.SIGTERM)
    assert daemon.stop() == 0, daemon.log()
    assert "STOPPING=1" in daemon.notify.lines()
    stopped = finished_passes(url)[-1]
    assert stopped.outcome == "stopped"
    assert isinstance(stopped.summary["stopped"], int) and stopped.summary["stopped"] > 0

    deploy.admin("POST", "faults", {})
    assert _assert_nothing_half_done(deploy, url) > 0

    again = start_daemon()
    again.wait_until(
        lambda: (
            (runs := finished_passes(url))
            and runs[-1].pid == again.process.pid
            and runs[-1].outcome == "ok"
            and _done_tasks(url) == len(USERS)
        ),
        "a clean pass after the restart",
    )
    assert again.stop() == 0
    assert _assert_nothing_half_done(deploy, url) == 0
    for email in USERS:
        keypairs, identity = gmail_state(deploy, email)
        assert len(keypairs) == 1 and keypairs[0]["enablementState"] == "enabled", email
        assert identity is not None and identity["primaryKeyPairId"] == keypairs[0]["keyPairId"]


def test_a_pass_due_while_another_process_holds_the_lock_is_skipped_and_said_so(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    deploy = daemon_deployment
    url = deploy.config.state.url
    with RunLock(url, deploy.config.state.lock_file):
        daemon = start_daemon()
        daemon.wait_for_notification("READY=1")
        daemon.wait_until(
            lambda: any(
                "pass skipped: another syncd process" in s for s in daemon.notify.statuses()
            ),
            "a pass skipped for the lock",
        )
        assert "holds the run lock" in daemon.log()
        assert finished_passes(url) == []
    daemon.wait_until(lambda: finished_passes(url), "a pass once the lock is free")
    assert daemon.stop() == 0


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_sigterm_during_a_retry_after_wait_stops_at_once(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    deploy = daemon_deployment
    url = deploy.config.state.url
    # 50 s: under google.max_retry_after and the step's time budget, so it is waited for.
    deploy.admin("POST", "faults", {"error_429": 1.0, "retry_after_seconds": 50})
    daemon = start_daemon()
    daemon.wait_until(lambda: "retry 1 in 50." in daemon.log(), "a retry waiting 50 s")
    started = time.monotonic()
    daemon.send(signal.SIGTERM)
    assert daemon.stop() == 0, daemon.log()[-3000:]
    assert time.monotonic() - started < 10, "the stop waited for Retry-After"
    stopped = finished_passes(url)[-1]
    assert stopped.outcome == "stopped", (stopped.outcome, stopped.summary)
    assert stopped.summary["stopped"] == 6, stopped.summary
