"""Superseded key pairs disabled and disabled ones obliterated, end to end: the real ``syncd``
command against the sandbox over HTTP, with a real state store and KMS (issue 15, item 4).

syncd decides with the real clock against the dates its state store keeps (when a key pair
was superseded, when it was disabled); months cannot pass in a test, so the test moves those
dates back in the state store (tests/pipeline/aging.py). Gmail's own rule (30 days disabled
before an obliterate) is the sandbox's, on the sandbox's clock, which the test moves through
its admin endpoint: once only syncd's dates move (Gmail refuses, syncd waits another period),
then both move together (Gmail obliterates).
"""

from __future__ import annotations

import json
import signal
from typing import Any

from sqlalchemy import select

from syncd.domain import KeyPairStatus, KmsKeyState
from syncd.state.db import Database
from syncd.state.models import AuditEvent, KeyPair, KmsKey, User

from .aging import age_key_pairs
from .conftest import Deployment, gmail_state, sandbox_users

MONTH = 31


def _ok(deploy: Deployment, *args: str) -> str:
    done = deploy.syncd(*args)
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def _retire_actions(deploy: Deployment) -> list[dict[str, Any]]:
    plan = json.loads(_ok(deploy, "plan", "--format", "json"))["plan"]
    return sorted(
        (a for a in plan["actions"] if a["action"] == "retire"), key=lambda a: a["email"]
    )


def _rows(deploy: Deployment, email: str) -> list[tuple[int, KeyPairStatus, Any, Any, Any]]:
    """(generation, status, gmail key pair id, disabled_at, KMS key state) of each key pair."""
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            rows = session.execute(
                select(
                    KeyPair.generation,
                    KeyPair.status,
                    KeyPair.gmail_key_pair_id,
                    KeyPair.disabled_at,
                    KmsKey.state,
                )
                .join(User, User.id == KeyPair.user_id)
                .outerjoin(KmsKey, KmsKey.id == KeyPair.kms_private_key_id)
                .where(User.email == email)
                .order_by(KeyPair.generation)
            ).all()
    finally:
        database.close()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _history(deploy: Deployment, email: str, action: str) -> list[dict[str, Any]]:
    """The details of the user's audit events named ``action``, oldest first."""
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            return list(
                session.scalars(
                    select(AuditEvent.detail)
                    .where(AuditEvent.email == email, AuditEvent.action == action)
                    .order_by(AuditEvent.id)
                )
            )
    finally:
        database.close()


def test_superseded_key_pairs_are_disabled_then_obliterated(deployment: Deployment) -> None:
    deploy = deployment
    renewed, leaver, bystander = users = sandbox_users(3)
    deploy.set_users(users)
    deploy.update_config(
        policy={
            "superseded_disable_after": f"{MONTH}d",
            "obliterate_after_days": MONTH,
            "deprovision_after": 0,
        }
    )
    url = deploy.config.state.url
    _ok(deploy, "sync", "--once")
    _ok(deploy, "resync", "--user", renewed, "--force")  # generation 2; 1 is superseded
    [(_, superseded, first, _, _), (_, active, second, _, _)] = _rows(deploy, renewed)
    assert (superseded, active) == (KeyPairStatus.SUPERSEDED, KeyPairStatus.ACTIVE)
    assert _retire_actions(deploy) == []  # superseded a moment ago: not due

    # A month later (for syncd): the superseded key pair is disabled, the active one is not.
    assert age_key_pairs(url, MONTH + 1, ("superseded_at",), emails=(renewed,)) == 1
    [action] = _retire_actions(deploy)
    assert (action["email"], action["code"], action["task"]) == (
        renewed, "superseded_disable_due", "retire"
    )
    assert action["reason"].startswith("key pair generation 1 superseded on ")
    _ok(deploy, "sync", "--once")
    keypairs, identity = gmail_state(deploy, renewed)
    states = {kp["keyPairId"]: kp["enablementState"] for kp in keypairs}
    assert states == {first: "disabled", second: "enabled"}
    assert identity is not None and identity["primaryKeyPairId"] == second
    [(_, status, _, disabled_at, kms_state), (_, still, _, _, kms_active)] = _rows(deploy, renewed)
    assert status is KeyPairStatus.DISABLED and disabled_at is not None
    assert (kms_state, still, kms_active) == (
        KmsKeyState.REVOKED, KeyPairStatus.ACTIVE, KmsKeyState.ACTIVE
    )
    [planned] = _history(deploy, renewed, "plan.retire")
    assert planned["code"] == "superseded_disable_due"
    [disabled] = _history(deploy, renewed, "retire.disable_superseded")
    assert disabled["disabled"] == [first] and disabled["generations"] == [1]

    # The leaver is deprovisioned: their key pair disabled in Gmail, disabled_at recorded.
    deploy.set_users([renewed, bystander])
    _ok(deploy, "sync", "--once")
    [(_, gone_status, gone_id, gone_at, _)] = _rows(deploy, leaver)
    assert gone_status is KeyPairStatus.DISABLED and gone_at is not None

    # A month later for syncd only: Gmail's clock says both were disabled minutes ago, so it
    # refuses; syncd records the refusal and waits another period instead of asking each pass.
    assert age_key_pairs(url, MONTH + 1, ("disabled_at",), emails=(renewed, leaver)) == 2
    actions = _retire_actions(deploy)
    assert [(a["email"], a["code"]) for a in actions] == [
        (renewed, "obliterate_due"), (leaver, "obliterate_due")
    ]
    _ok(deploy, "sync", "--once")
    [refused] = _history(deploy, leaver, "retire.obliterate_disabled")
    assert refused["obliterated"] == []
    assert "can be obliterated after" in refused["refused"][gone_id]  # Gmail's message
    assert [kp["keyPairId"] for kp in gmail_state(deploy, leaver)[0]] == [gone_id]
    assert _rows(deploy, leaver)[0][1] is KeyPairStatus.DISABLED
    assert _retire_actions(deploy) == []

    # Gmail's month passes too: both are obliterated; the leaver stays deprovisioned. The first
    # pass is killed right after an obliterate, before syncd records it: the next pass resumes
    # the task, and Gmail's 404 tells it the key pair is gone.
    deploy.admin("POST", "clock", {"advance_seconds": MONTH * 86400})
    age_key_pairs(url, MONTH + 1, ("disabled_at",), emails=(renewed, leaver))
    crashed = deploy.syncd("sync", "--once", crash_at="after:obliterate_disabled")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    _ok(deploy, "sync", "--once")
    assert gmail_state(deploy, leaver)[0] == []
    assert [kp["keyPairId"] for kp in gmail_state(deploy, renewed)[0]] == [second]
    assert [row[1] for row in _rows(deploy, renewed)] == [
        KeyPairStatus.OBLITERATED, KeyPairStatus.ACTIVE
    ]
    assert _rows(deploy, leaver)[0][1] is KeyPairStatus.OBLITERATED
    for email, key_pair_id in ((renewed, first), (leaver, gone_id)):
        last = _history(deploy, email, "retire.obliterate_disabled")[-1]
        assert last["obliterated"] + last.get("gone", []) == [key_pair_id], email
        assert "refused" not in last
    status = json.loads(_ok(deploy, "status", "--user", leaver, "--format", "json"))["users"]
    assert status[0]["state"] == "deprovisioned"

