"""Who stays in scope: unusable directory entries, the deprovision grace period, blocked
deprovisions, values the state store cannot hold, and skipped entries recorded once.

Real passes (in process, for speed) against the sandbox over HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from syncd.app.passes import sync_pass
from syncd.pipeline.sync import PassResult
from syncd.report.service import make_report
from syncd.state.db import Database
from syncd.state.models import AuditEvent, Run, User

from .conftest import Deployment, gmail_state, sandbox_users
from .test_sync import assert_provisioned


def run_pass(deploy: Deployment) -> PassResult:
    app = deploy.app()
    try:
        return sync_pass(app)
    finally:
        app.database.close()


def write_users(deploy: Deployment, entries: list[dict[str, Any]]) -> None:
    deploy.users_file.write_text(yaml.safe_dump({"users": entries}))


def entry(email: str, **extra: Any) -> dict[str, Any]:
    return {"email": email, "id": f"id-{email}", **extra}


def users(deploy: Deployment) -> dict[str, tuple[bool, datetime | None]]:
    """email -> (in scope, missing since)."""
    database = Database.open(deploy.config.state.url)
    with database.sessions() as session:
        rows = session.execute(select(User.email, User.in_scope, User.missing_since)).all()
    database.close()
    return {email: (in_scope, since) for email, in_scope, since in rows}


def audited(deploy: Deployment, action: str) -> list[tuple[str | None, dict[str, Any]]]:
    database = Database.open(deploy.config.state.url)
    with database.sessions() as session:
        rows = session.execute(
            select(AuditEvent.email, AuditEvent.detail)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        ).all()
    database.close()
    return [(email, detail) for email, detail in rows]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_an_unusable_entry_or_a_short_absence_deprovisions_nobody(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    first = sandbox_users(6)
    assert len(run_pass(deployment).results) == 6

    # user00's entry cannot be read (enabled: maybe); user05 is gone from the file.
    write_users(deployment, [entry(first[0], enabled="maybe"), *map(entry, first[1:5])])
    caplog.clear()
    held = run_pass(deployment)
    assert held.plan.actions == () and held.plan.blocked_reason is None
    reasons = {h.email: h.reason for h in held.plan.held}
    assert reasons[first[0]] == (
        "directory entry unusable: users.yaml entry 1: enabled must be true or false, "
        "not 'maybe'; keeping current state"
    )
    assert reasons[first[5]].startswith("not in the directory: missing since ")
    assert ", deprovision after 1h (at " in reasons[first[5]]
    for email in first:
        assert_provisioned(deployment, email)
    state = users(deployment)
    assert state[first[0]] == (True, None)
    in_scope, missing_since = state[first[5]]
    assert in_scope and missing_since is not None
    assert messages(caplog, logging.WARNING) == [
        "directory entry skipped: users.yaml entry 1: enabled must be true or false, not 'maybe'",
        "1 directory entries skipped (1 new); see syncd directory test",
    ]

    # The next pass: nothing new to say, the absence keeps counting from the first read.
    caplog.clear()
    again = run_pass(deployment)
    assert again.plan.actions == ()
    assert messages(caplog, logging.WARNING) == []
    assert "1 directory entries skipped (0 new); see syncd directory test" in messages(
        caplog, logging.INFO
    )
    assert users(deployment)[first[5]] == (True, missing_since)
    assert [email for email, _ in audited(deployment, "directory.entry_skipped")] == [first[0]]

    # Without a grace period the absent user goes; the unusable entry still holds user00.
    deployment.update_config(policy={"deprovision_after": 0})
    gone = run_pass(deployment)
    assert [(a.email, a.kind.value) for a in gone.plan.actions] == [(first[5], "deprovision")]
    assert gmail_state(deployment, first[5])[1] is None
    assert_provisioned(deployment, first[0])

    # Fixed: resolved once, and the user is simply listed again.
    write_users(deployment, [*map(entry, first[:5])])
    caplog.clear()
    fixed = run_pass(deployment)
    assert fixed.plan.actions == () and fixed.plan.held == ()
    assert [d["entry"] for _, d in audited(deployment, "directory.entry_resolved")] == [
        "users.yaml entry 1"
    ]
    assert len(audited(deployment, "directory.entry_skipped")) == 1
    assert messages(caplog, logging.WARNING) == []


def test_a_blocked_deprovision_changes_nothing_about_scope(deployment: Deployment) -> None:
    deployment.update_config(policy={"deprovision_after": 0})  # max_deprovision is 40%
    everyone = sandbox_users(6)
    assert len(run_pass(deployment).results) == 6

    deployment.set_users(everyone[:2])
    for _ in range(2):  # the second pass blocks with the same figures
        blocked = run_pass(deployment)
        assert blocked.plan.blocked_reason is not None
        assert blocked.plan.blocked_reason.startswith(
            "4 of 6 managed users would be deprovisioned, more than policy.max_deprovision "
            "(40% = 2)"
        )
        assert all(in_scope for in_scope, _ in users(deployment).values())
    for email in everyone:
        assert_provisioned(deployment, email)

    database = Database.open(deployment.config.state.url)
    with database.sessions() as session:
        assert session.scalars(select(Run.outcome).order_by(Run.id)).all()[-2:] == [
            "blocked",
            "blocked",
        ]
    report = make_report(database, datetime.now(UTC), 30, None)
    database.close()
    assert report.blocked.users == everyone[2:]
    assert report.blocked.reason == blocked.plan.blocked_reason
    assert (report.coverage.covered, report.coverage.blocked) == (2, 4)
    assert report.coverage.percent_covered == pytest.approx(33.33)
    assert report.metrics()["blocked"] == 4


def test_values_the_state_store_cannot_hold_skip_their_entry_only(
    deployment: Deployment,
) -> None:
    good = sandbox_users(3)
    write_users(
        deployment,
        [
            *map(entry, good),
            {"email": "long-id@example.com", "id": "i" * 256},
            {"email": f"{'l' * 320}@example.com", "id": "long-email"},
            {"email": "nul@example.com", "id": "n\x00l"},
        ],
    )
    result = run_pass(deployment)
    assert sorted(r.email for r in result.results if r.ok) == good
    assert result.plan.skipped_entries == 3
    skipped = audited(deployment, "directory.entry_skipped")
    assert [d["entry"] for _, d in skipped] == [f"users.yaml entry {n}" for n in (4, 5, 6)]
    assert "longer than 255 characters" in skipped[0][1]["reason"]
    assert "longer than 320 characters" in skipped[1][1]["reason"]
    assert "(U+0000)" in skipped[2][1]["reason"]
    assert sorted(users(deployment)) == good
