"""Reason codes beside the prose (issue 15, item 9): ``syncd plan --format json``, the pass's
JSON and the audit log, from the real command against the sandbox."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from syncd.state.db import Database
from syncd.state.models import AuditEvent

from .conftest import Deployment, sandbox_users


def _json(deploy: Deployment, *args: str) -> Any:
    done = deploy.syncd(*args, "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_plan_pass_and_audit_carry_reason_codes(deployment: Deployment) -> None:
    deploy = deployment
    users = sandbox_users(6)
    plan = _json(deploy, "plan")["plan"]
    assert [(a["email"], a["action"], a["code"], a["task"]) for a in plan["actions"]] == [
        (email, "provision", "new_in_scope", "provision") for email in users
    ]
    assert (plan["blocked_reason"], plan["blocked_code"]) == (None, None)
    assert _json(deploy, "sync", "--once")["pass"]["blocked_code"] is None
    events = _json(deploy, "history", "--user", users[0])["events"]
    [planned] = [e for e in events if e["action"] == "plan.provision"]
    assert planned["detail"]["code"] == "new_in_scope"
    assert planned["detail"]["reason"] == "new in scope"

    # One is disabled in the directory, four leave it: within the grace period, those four
    # are held; once it is over, five of six would go, more than policy.max_deprovision (40%).
    deploy.update_config(policy={"deprovision_after": "1h"})
    deploy.set_users(users[:2], disabled=(users[1],))
    plan = _json(deploy, "plan")["plan"]
    assert plan["blocked_code"] is None
    assert [(a["email"], a["action"], a["code"]) for a in plan["actions"]] == [
        (users[1], "deprovision", "disabled_in_directory")
    ]
    assert {(h["email"], h["code"]) for h in plan["held"]} == {
        (email, "missing_grace_period") for email in users[2:]
    }
    deploy.update_config(policy={"deprovision_after": "0s"})
    plan = _json(deploy, "plan")["plan"]
    assert plan["blocked_code"] == "mass_deprovision_blocked"
    assert plan["blocked_reason"].startswith("5 of 6 managed users would be deprovisioned")
    assert sorted(plan["blocked_deprovisions"]) == users[1:]
    assert _json(deploy, "sync", "--once")["pass"]["blocked_code"] == "mass_deprovision_blocked"
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            [blocked] = session.scalars(
                select(AuditEvent.detail).where(AuditEvent.action == "pass.deprovision_blocked")
            )
    finally:
        database.close()
    assert blocked["code"] == "mass_deprovision_blocked"
