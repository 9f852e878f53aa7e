"""``syncd health``: exit 0 only with a reachable database and a recent, sound last pass."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from syncd.app.passes import sync_pass
from syncd.service.health import Health, PassRow, abandoned, check_health
from syncd.state.lock import pid_namespace

from .conftest import Deployment, sandbox_users


def test_health_follows_the_last_pass_and_the_database(deployment: Deployment) -> None:
    fresh = deployment.syncd("health")
    assert fresh.returncode == 1
    assert "no sync pass has finished yet" in fresh.stdout

    assert deployment.syncd("sync", "--once").returncode == 0
    healthy = deployment.syncd("health", "--format", "json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    document = json.loads(healthy.stdout)
    assert document["healthy"] is True
    assert [c["name"] for c in document["checks"]] == ["database", "last pass"]

    deployment.update_config(daemon={"health_max_age": "1s"})
    time.sleep(1.5)
    stale = deployment.syncd("health")
    assert stale.returncode == 1 and "older than 1s" in stale.stdout, stale.stdout
    deployment.update_config(daemon={"health_max_age": "1h"})

    deployment.users_file.write_text("users: [unclosed")
    assert deployment.syncd("sync", "--once").returncode != 0
    broken = deployment.syncd("health")
    assert broken.returncode == 1
    assert "the directory could not be read" in broken.stdout, broken.stdout


def test_health_fails_when_the_database_is_unreachable(deployment: Deployment) -> None:
    url = deployment.config.state.url
    if url.startswith("sqlite"):
        unreachable = "sqlite:////nonexistent-folder/state.db"
    else:
        unreachable = "postgresql+psycopg://syncd@127.0.0.1:1/syncd"
    deployment.update_config(state={"url": unreachable})
    result = deployment.syncd("health")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("FAIL database: ")


SQLITE_ONLY = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)


def _healthy(deployment: Deployment) -> Health:
    return check_health(deployment.config, datetime.now(UTC))


@SQLITE_ONLY
def test_health_fails_when_every_user_failed_or_a_deprovision_was_blocked(
    deployment: Deployment,
) -> None:
    deployment.set_users(sandbox_users(3))
    deployment.update_config(pipeline={"step_retries": 0}, policy={"deprovision_after": 0})
    deployment.admin("POST", "faults", {"error_503": 1.0})
    result = sync_pass(deployment.app())
    assert len(result.failures) == 3
    unreachable = deployment.syncd("health")
    assert unreachable.returncode == 1, unreachable.stdout
    assert "every user it touched failed (3 failed, none done)" in unreachable.stdout

    deployment.admin("POST", "faults", {})
    time.sleep(1.1)  # pipeline.retry_initial: the failed tasks are due again
    assert sync_pass(deployment.app()).clean
    assert _healthy(deployment).ok

    deployment.set_users(sandbox_users(1))  # 2 of 3 leave: over the 40% limit
    assert sync_pass(deployment.app()).plan.blocked_reason
    blocked = _healthy(deployment)
    assert not blocked.ok
    assert "deprovisioning 2 user(s) was refused as a mass deprovision" in blocked.checks[-1].detail


@SQLITE_ONLY
def test_health_fails_when_the_last_pass_crashed_or_its_process_died(
    deployment: Deployment,
) -> None:
    deployment.set_users(sandbox_users(2))
    assert sync_pass(deployment.app()).clean
    assert _healthy(deployment).ok

    def boom(_plan: object) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        sync_pass(deployment.app(), on_plan=boom)
    health = _healthy(deployment)
    assert not health.ok
    assert "the pass crashed: RuntimeError: disk on fire" in health.checks[-1].detail

    deployment.set_users(sandbox_users(3))
    killed = deployment.syncd("sync", "--once", crash_at="before:create_key")
    assert killed.returncode == -9, killed.stderr
    died = _healthy(deployment)
    assert not died.ok
    assert "never finished: its process died or was killed" in died.checks[-1].detail

    assert sync_pass(deployment.app()).clean
    assert _healthy(deployment).ok


def test_a_pass_that_lost_the_run_lock_is_unhealthy() -> None:
    from syncd.service.health import judge_finished
    from syncd.state.models import Run

    run = Run(id=7, kind="sync", outcome="lock_lost", summary={"done": 3})
    check = judge_finished(run, age=10.0, limit=3600.0)
    assert not check.ok
    assert "lost the run lock to another syncd process" in check.detail


def _open_pass(number: int, started: datetime, pid: int, namespace: str | None) -> PassRow:
    return PassRow(number, started, None, None, {}, "a-host", pid, namespace)


def test_overlapping_passes_of_a_shared_group_are_not_taken_for_dead() -> None:
    """Instances of a shared group run passes at once; health judges each by its process,
    looked up only in its own PID namespace (a hostname shared by containers tells nothing)."""
    now = datetime.now(UTC)
    here, dead_pid = pid_namespace(), 2**22 + 4321  # above the default pid_max
    draining = _open_pass(1, now - timedelta(minutes=5), os.getpid(), here)
    planning = _open_pass(2, now - timedelta(minutes=1), os.getpid(), here)
    assert abandoned([draining, planning], now, 3600, shared=True) == []
    assert abandoned([draining, planning], now, 3600) == [draining]  # alone: one at a time
    killed = _open_pass(3, now - timedelta(minutes=1), dead_pid, here)
    elsewhere = _open_pass(4, now - timedelta(minutes=1), dead_pid, "another-boot-id:4026531836")
    assert abandoned([draining, killed, elsewhere], now, 3600, shared=True) == [killed]
    stale = _open_pass(5, now - timedelta(hours=2), dead_pid, None)  # cannot be told: too old
    assert abandoned([stale, planning], now, 3600, shared=True) == [stale]
