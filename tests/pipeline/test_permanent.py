"""Permanent failures: recorded once, held by the plan, never retried until a resync.

An address longer than a common name may be (64 characters) is provisioned (the CN falls back
to the local part, the subjectAltName keeps the address); an internationalised local part is
refused permanently, before any KMS key is made.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import func, select

from syncd.app.passes import sync_pass
from syncd.domain import TaskKind
from syncd.state.models import AuditEvent, KmsKey

from .conftest import LONG_USER, Deployment, gmail_state, sandbox_users

JOSE = "josé@example.com"


def _audit_count(deploy: Deployment, action: str, email: str) -> int:
    app = deploy.app()
    try:
        with app.database.sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.action == action, AuditEvent.email == email)
                )
                or 0
            )
    finally:
        app.database.close()


def _kms_labels(deploy: Deployment) -> list[str]:
    app = deploy.app()
    try:
        with app.database.sessions() as session:
            return list(session.scalars(select(KmsKey.label)))
    finally:
        app.database.close()


def test_permanent_failure_is_reported_once_and_not_retried(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    deployment.set_users([*sandbox_users(2), LONG_USER, JOSE])
    caplog.set_level(logging.WARNING, logger="syncd")
    app = deployment.app()
    first = sync_pass(app)
    app.database.close()
    assert {r.email for r in first.results if r.ok} == {*sandbox_users(2), LONG_USER}
    [failure] = first.failures
    assert failure.email == JOSE and failure.failed_step == "create_key"
    assert "internationalised local part" in (failure.error or "")
    warnings = [r.getMessage() for r in caplog.records if JOSE in r.getMessage()]
    assert len(warnings) == 1 and "failed permanently" in warnings[0]
    assert f"syncd resync --user {JOSE}" in warnings[0]
    assert not any(JOSE in label for label in _kms_labels(deployment)), "a key for nothing"

    # The long address is provisioned end to end: Gmail names the user by the full address.
    keypairs, identity = gmail_state(deployment, LONG_USER)
    assert [kp["subjectEmailAddresses"] for kp in keypairs] == [[LONG_USER]]
    assert identity is not None and identity["primaryKeyPairId"] == keypairs[0]["keyPairId"]

    # The next pass, past the retry backoff (1 s here), holds the user and retries nothing.
    time.sleep(1.2)
    caplog.clear()
    writes = deployment.writes()
    app = deployment.app()
    second = sync_pass(app)
    app.database.close()
    # Only a drift check may run: its slots (policy.verify_every spread over the users, counted
    # from the epoch) can fall between two passes, as one did at 2026-12-03 00:00Z.
    assert [r.email for r in second.results if r.kind is not TaskKind.VERIFY] == []
    [held] = second.plan.held
    assert held.email == JOSE
    assert held.reason.startswith("permanent failure at create_key: ")
    assert held.reason.endswith(f"fix the cause, then syncd resync --user {JOSE}")
    assert not [r for r in caplog.records if JOSE in r.getMessage()]
    assert _audit_count(deployment, "provision.failed", JOSE) == 1
    assert deployment.writes() == writes

    status = json.loads(deployment.syncd("status", "--user", JOSE, "--format", "json").stdout)
    [row] = status["users"]
    assert row["state"] == "failed" and row["permanent"] is True
    assert row["next_attempt"] is None and "internationalised" in row["last_error"]
    report = deployment.syncd("report", "--format", "json", "--no-record", "--no-email")
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)["report"]
    assert document["coverage"]["failed"] == 1, document["coverage"]
    assert [f["email"] for f in document["failures"]] == [JOSE]


def test_plan_holds_a_permanent_failure_but_deprovisions_a_user_who_left() -> None:
    from datetime import UTC, datetime, timedelta

    from syncd.directory.base import DirectoryUser
    from syncd.plan import ActionKind, Hold, Policy, Subject, TaskView, UserView, decide

    now = datetime.now(UTC)
    task = TaskView("provision", "failed", "create_key", 1, None, "create_key: not ASCII", True)
    known = UserView(JOSE, "d1", True, open_task=task, holds_credentials=True)
    policy = Policy(timedelta(days=30), "10%", deprovision_after=timedelta(0))
    listed = DirectoryUser(email=JOSE, directory_id="d1", enabled=True)
    held = decide(Subject(JOSE, listed, known, policy, now))
    assert held == Hold(
        JOSE,
        f"permanent failure at create_key: not ASCII; fix the cause, then "
        f"syncd resync --user {JOSE}",
    )
    left = decide(Subject(JOSE, None, known, policy, now))
    assert left is not None and not isinstance(left, Hold)
    assert left.kind is ActionKind.DEPROVISION
