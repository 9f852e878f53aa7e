"""Drift found by ordinary passes (issue 15 item 1): an identity deleted, a key pair disabled
and a KMS key revoked behind syncd's back, in the sandbox over HTTP, are found by the rotating
verification within ``policy.verify_every``, reported (not covered, with their reason codes, in
``syncd report`` and the metrics) and repaired by the next pass, with no resync."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from syncd.domain import KeyPairStatus, TaskKind
from syncd.pipeline.steps import KeyPairView, Outcome, Work
from syncd.pipeline.steps.verify import verify_credential
from syncd.service.metrics import Metrics
from syncd.state.db import Database
from syncd.state.models import AuditEvent, KeyPair, User
from tests.support.sandbox import leaf_pkcs7

from .conftest import Deployment, gmail_state, sandbox_users
from .test_sync import assert_provisioned

GONE, DISABLED, REVOKED = sandbox_users(3)


def _pass(deploy: Deployment, done: int) -> None:
    result = deploy.syncd("sync", "--once")
    assert result.returncode == 0, result.stderr
    assert f"{done} done, 0 failed" in result.stdout, result.stdout


def _audit(deploy: Deployment) -> dict[str, list[tuple[str, Any]]]:
    """Each user's audit trail, oldest first: (action, detail)."""
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
            trail: dict[str, list[tuple[str, Any]]] = {}
            for event in events:
                if event.email:
                    trail.setdefault(event.email, []).append((event.action, event.detail))
            return trail
    finally:
        database.close()


def _report(deploy: Deployment) -> dict[str, Any]:
    out = deploy.syncd("report", "--no-record", "--format", "json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)["report"]
    return report


def _active(deploy: Deployment, email: str) -> KeyPair:
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            return session.scalars(
                select(KeyPair)
                .join(User, User.id == KeyPair.user_id)
                .where(User.email == email, KeyPair.status == KeyPairStatus.ACTIVE)
            ).one()
    finally:
        database.close()


def _drift_metrics(deploy: Deployment, metrics: Metrics) -> dict[str, tuple[float, float]]:
    """(users with drift now, drifts found) by code, as the daemon's metrics would read them."""
    database = Database.open(deploy.config.state.url)
    try:
        metrics.refresh_state(database, 30, datetime.now(UTC))
    finally:
        database.close()
    values = {}
    for code in ("drift_identity_missing", "drift_keypair_disabled", "drift_kms_key_revoked"):
        now = metrics.registry.get_sample_value("syncd_drift_users", {"code": code})
        found = metrics.registry.get_sample_value("syncd_drift_found_total", {"code": code})
        values[code] = (now or 0.0, found or 0.0)
    return values


def test_drift_behind_syncds_back_is_found_reported_and_repaired_by_ordinary_passes(
    deployment: Deployment,
) -> None:
    deploy = deployment
    deploy.set_users([GONE, DISABLED, REVOKED])
    # A second: every credential is due at each pass (certificates are backdated 5 minutes).
    deploy.update_config(policy={"verify_every": "1s"})
    _pass(deploy, 3)
    for email in (GONE, DISABLED, REVOKED):
        assert_provisioned(deploy, email)
    metrics = Metrics()

    # Behind syncd's back: the Admin console, and the KMS.
    gmail = deploy.gmail()
    gmail.delete_identity(GONE)
    disabled_id = assert_provisioned(deploy, DISABLED)
    gmail.disable_keypair(DISABLED, disabled_id)
    revoked = _active(deploy, REVOKED)
    app = deploy.app()
    try:
        assert revoked.kms_private_key_id is not None
        app.key_manager().revoke(revoked.kms_private_key_id, "revoked outside syncd (test)")
    finally:
        app.close()

    # The next ordinary pass verifies everyone, finds the three drifts, writes nothing.
    writes = deploy.writes()
    _pass(deploy, 3)
    assert deploy.writes() == writes, "a verification wrote to Gmail"
    found = {}
    trail = _audit(deploy)
    for email in (GONE, DISABLED, REVOKED):
        events = [d for action, d in trail[email] if action == "verify.verify_credential"]
        assert len(events) == 1, email
        found[email] = events[0]
    assert found[GONE]["drift"] == "drift_identity_missing"
    assert found[GONE]["detail"] == "identity not found in Gmail"
    assert found[DISABLED] == {
        "drift": "drift_keypair_disabled",
        "detail": f"key pair {disabled_id} is disabled",
    }
    assert found[REVOKED]["drift"] == "drift_kms_key_revoked"
    assert "is revoked" in found[REVOKED]["detail"]

    # Until repaired, nobody of them is covered, each listed with the reason.
    report = _report(deploy)
    assert report["coverage"]["covered"] == 0
    assert report["coverage"]["drift"] == 3
    assert report["coverage"]["percent_covered"] == 0.0
    assert {(d["email"], d["code"]) for d in report["drift"]["users"]} == {
        (GONE, "drift_identity_missing"),
        (DISABLED, "drift_keypair_disabled"),
        (REVOKED, "drift_kms_key_revoked"),
    }
    assert (report["drift"]["found"], report["drift"]["repaired"]) == (3, 0)
    assert _drift_metrics(deploy, metrics) == {
        "drift_identity_missing": (1.0, 1.0),
        "drift_keypair_disabled": (1.0, 1.0),
        "drift_kms_key_revoked": (1.0, 1.0),
    }
    failing = deploy.syncd("report", "--no-record", "--fail-on", "drift>0")
    assert failing.returncode == 1
    assert "drift>0 holds: drift is 3" in failing.stderr

    # syncd plan says what the next pass does, and why.
    plan = json.loads(deploy.syncd("plan", "--format", "json").stdout)["plan"]
    reasons = {a["email"]: (a["action"], a["reason"]) for a in plan["actions"]}
    assert reasons[GONE][0] == "repair"
    assert reasons[GONE][1].startswith("identity deleted outside syncd (found ")
    assert reasons[DISABLED][0] == "repair"
    assert reasons[DISABLED][1].startswith("key pair disabled outside syncd (found ")
    assert reasons[REVOKED][0] == "replace"
    assert reasons[REVOKED][1].startswith("KMS key revoked outside syncd (found ")
    assert reasons[REVOKED][1].endswith("; a fresh key pair")

    # The pass after repairs them: the identity back, the same key pair enabled again, a
    # fresh key pair for the revoked key.
    _pass(deploy, 3)
    assert assert_provisioned(deploy, DISABLED) == disabled_id
    assert_provisioned(deploy, GONE)
    keypairs, identity = gmail_state(deploy, REVOKED)
    assert identity is not None and identity["primaryKeyPairId"] != revoked.gmail_key_pair_id
    assert identity["primaryKeyPairId"] in {kp["keyPairId"] for kp in keypairs}
    for email in (GONE, DISABLED, REVOKED):
        active = _active(deploy, email)
        assert (active.drift, active.drift_detail) == (None, None), email
    report = _report(deploy)
    assert (report["coverage"]["covered"], report["coverage"]["drift"]) == (3, 0)
    assert report["drift"]["users"] == []
    assert (report["drift"]["found"], report["drift"]["repaired"]) == (3, 3)
    assert _drift_metrics(deploy, metrics) == {
        "drift_identity_missing": (0.0, 1.0),
        "drift_keypair_disabled": (0.0, 1.0),
        "drift_kms_key_revoked": (0.0, 1.0),
    }

    # Verified again and whole: recorded on the key pair, nothing more in the audit log. The
    # repairs recorded a verification just now: due again once verify_every (1s) has passed
    # (passes run in-process take well under a second).
    before = _active(deploy, DISABLED).verified_at
    time.sleep(1.1)
    _pass(deploy, 3)
    after = _active(deploy, DISABLED).verified_at
    assert before is not None and after is not None and after > before
    trail = _audit(deploy)
    for email in (GONE, DISABLED, REVOKED):
        actions = [action for action, _ in trail[email]]
        assert actions.count("verify.verify_credential") == 1, email
        assert actions.count("verify.done") == 1, email  # the verification that found drift
        assert "plan.verify" not in actions, email  # verifications are audited by what they find


def _view(kp: KeyPair) -> KeyPairView:
    return KeyPairView(
        kp.id,
        kp.generation,
        kp.status,
        kp.kms_label,
        kp.kms_private_key_id,
        kp.kms_public_key_id,
        kp.certificate_pem,
        kp.fingerprint_sha256,
        kp.gmail_key_pair_id,
        kp.private_key_format,
        kp.kms_backend,
    )


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_verify_credential_names_each_drift(deployment: Deployment) -> None:
    """The step against the sandbox and the embedded KMS, one drift at a time."""
    deploy = deployment
    first, second = sandbox_users(2)
    deploy.set_users([first, second])
    _pass(deploy, 2)
    app = deploy.app()
    try:
        services = app.services()

        def verify(email: str, **changes: Any) -> tuple[Outcome, int]:
            kp = _active(deploy, email)
            target = replace(_view(kp), **changes)
            work = Work(0, TaskKind.VERIFY, kp.user_id, email, target, ())
            return verify_credential(work, services), kp.id

        whole, kp_id = verify(first)
        assert whole.audit is None
        columns = whole.key_pairs[kp_id]
        assert (columns["drift"], columns["drift_detail"]) == (None, None)
        assert columns["verified_at"] is not None

        # The identity pointed at another key pair of the user's (made by hand).
        ours = assert_provisioned(deploy, first)
        gmail = deploy.gmail()
        theirs = gmail.create_keypair(
            first, leaf_pkcs7(deploy.hierarchy, first), deploy.config.kacls.uri or "", "eA=="
        )["keyPairId"]
        gmail.patch_identity(first, theirs)
        repointed, _ = verify(first)
        assert repointed.audit == {
            "drift": "drift_identity_repointed",
            "detail": f"identity points at key pair {theirs}, not syncd's {ours}",
        }

        # A key pair Gmail does not know: missing outranks the identity pointing elsewhere.
        missing, kp_id = verify(second, gmail_key_pair_id="no-such-key-pair")
        assert missing.audit is not None
        assert missing.audit["drift"] == "drift_keypair_missing"
        assert missing.audit["detail"].startswith(
            "key pair no-such-key-pair not found in Gmail; identity points at key pair "
        )
        assert missing.key_pairs[kp_id]["drift"] == "drift_keypair_missing"

        # A KMS key gone from the KMS (destroyed) is a revoked key: a replacement.
        destroyed, _ = verify(second, kms_private_key_id="no-such-key")
        assert destroyed.audit is not None
        assert destroyed.audit["drift"] == "drift_kms_key_revoked"
        assert "not found in local" in destroyed.audit["detail"]

        # An adopted key pair has no KMS key: only Gmail is looked at.
        adopted, _ = verify(second, kms_private_key_id=None, kms_label="nowhere")
        assert adopted.audit is None

        # A suspended mailbox is not drift: verified, nothing to repair.
        directory_file = deploy.root / "sandbox" / "directory.json"
        directory = json.loads(directory_file.read_text())
        for record in directory["users"]:
            if record["primaryEmail"] == second:
                record["suspended"] = True
        directory_file.write_text(json.dumps(directory))
        suspended, kp_id = verify(second, gmail_key_pair_id="no-such-key-pair")
        assert suspended.audit is None
        assert suspended.key_pairs[kp_id]["drift"] is None
        assert suspended.key_pairs[kp_id]["verified_at"] is not None
    finally:
        app.close()
