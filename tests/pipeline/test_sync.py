"""End-to-end passes against the sandbox over HTTP, with a real state store and KMS."""

from __future__ import annotations

import json

from ..conftest import kacls_view
from .aging import age_key_pairs
from .conftest import Deployment, gmail_state, sandbox_users


def _enabled(keypairs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [kp for kp in keypairs if kp.get("enablementState") == "enabled"]


def assert_provisioned(deploy: Deployment, email: str) -> str:
    """Exactly one enabled key pair for ``email``, and the identity points at it."""
    keypairs, identity = gmail_state(deploy, email)
    enabled = _enabled(keypairs)
    assert len(enabled) == 1, f"{email}: {len(enabled)} enabled key pairs"
    assert enabled[0]["subjectEmailAddresses"] == [email]
    assert identity is not None and identity["primaryKeyPairId"] == enabled[0]["keyPairId"]
    return str(enabled[0]["keyPairId"])


def test_first_pass_provisions_everyone_and_second_pass_writes_nothing(
    deployment: Deployment,
) -> None:
    done = deployment.syncd("sync", "--once")
    assert done.returncode == 0, done.stderr
    assert "6 done, 0 failed" in done.stdout
    for email in sandbox_users(6):
        assert_provisioned(deployment, email)
    keypairs, identity = gmail_state(deployment, sandbox_users(10)[7])
    assert keypairs == [] and identity is None

    status = json.loads(deployment.syncd("status", "--format", "json").stdout)["users"]
    assert {row["state"] for row in status} == {"active"}
    assert all(row["certificate_expires"] and row["key_pair_id"] for row in status)
    # The pass wrote kaclsData as PKCS#1 (kacls.private_key_format's default) and recorded it.
    assert {row["private_key_format"] for row in status} == {"pkcs1"}
    keypairs, _ = gmail_state(deployment, "user00@example.com")
    wrapping_key = deployment.config.kacls.wrapping_key.file
    assert wrapping_key is not None
    metadata = keypairs[0]["privateKeyMetadata"][0]["kaclsKeyMetadata"]
    assert kacls_view(metadata["kaclsData"], wrapping_key.read_bytes()).is_pkcs1

    writes, keys = deployment.writes(), deployment.kms_key_count()
    again = deployment.syncd("sync", "--once")
    assert again.returncode == 0, again.stderr
    assert "0 done, 0 failed" in again.stdout
    assert deployment.writes() == writes, "a pass with nothing to do wrote to Gmail"
    assert deployment.kms_key_count() == keys, "a pass with nothing to do wrote to the KMS"

    history = json.loads(
        deployment.syncd("history", "--user", "user00@example.com", "--format", "json").stdout
    )["events"]
    actions = [event["action"] for event in history]
    assert actions[:2] == ["plan.provision", "provision.create_key"]
    assert actions[-1] == "provision.done"


def test_left_and_disabled_users_are_deprovisioned_and_history_kept(
    deployment: Deployment,
) -> None:
    deployment.update_config(policy={"deprovision_after": 0})  # no grace period
    assert deployment.syncd("sync", "--once").returncode == 0
    users = sandbox_users(6)
    deployment.set_users(users[:5], disabled=(users[0],))  # user05 left, user00 disabled
    plan = json.loads(deployment.syncd("plan", "--format", "json").stdout)["plan"]
    assert {(a["email"], a["action"]) for a in plan["actions"]} == {
        (users[0], "deprovision"),
        (users[5], "deprovision"),
    }
    done = deployment.syncd("sync", "--once")
    assert done.returncode == 0, done.stderr
    for email in (users[0], users[5]):
        keypairs, identity = gmail_state(deployment, email)
        assert identity is None
        assert keypairs and not _enabled(keypairs)
    for email in users[1:5]:
        assert_provisioned(deployment, email)
    status = {
        row["email"]: row
        for row in json.loads(deployment.syncd("status", "--format", "json").stdout)["users"]
    }
    assert status[users[5]]["state"] == "deprovisioned"
    history = json.loads(
        deployment.syncd("history", "--user", users[5], "--format", "json").stdout
    )["events"]
    assert "provision.done" in [e["action"] for e in history]
    assert history[-1]["action"] == "deprovision.done"

    # Coming back: a fresh generation is provisioned.
    deployment.set_users(users[1:])
    assert deployment.syncd("sync", "--once").returncode == 0
    assert_provisioned(deployment, users[5])


def test_empty_directory_and_mass_drop_deprovision_nobody(deployment: Deployment) -> None:
    deployment.update_config(policy={"deprovision_after": 0})  # no grace period
    assert deployment.syncd("sync", "--once").returncode == 0
    writes = deployment.writes()

    deployment.set_users([])
    empty = deployment.syncd("sync", "--once")
    assert empty.returncode == 1
    assert "returned no users while syncd manages 6" in empty.stderr
    assert deployment.writes() == writes

    deployment.set_users(sandbox_users(6)[:2])  # drops 4 of 6 (67%), over the 40% limit
    dropped = deployment.syncd("sync", "--once")
    assert dropped.returncode == 1
    assert "4 deprovisions blocked" in dropped.stdout
    assert "--allow-mass-deprovision" in dropped.stderr
    assert deployment.writes() == writes
    for email in sandbox_users(6):
        assert_provisioned(deployment, email)

    forced = deployment.syncd("sync", "--once", "--allow-mass-deprovision")
    assert forced.returncode == 0, forced.stderr
    for email in sandbox_users(6)[2:]:
        assert gmail_state(deployment, email)[1] is None


def test_one_users_failure_does_not_stop_the_others(deployment: Deployment) -> None:
    # nobody@ is not a user of the sandbox domain: Google refuses the token for that subject.
    deployment.update_config(pipeline={"retry_initial": "1h"})
    deployment.set_users([*sandbox_users(4), "nobody@example.com"])
    done = deployment.syncd("sync", "--once")
    assert done.returncode == 1
    assert "4 done, 1 failed" in done.stdout
    assert "failed: nobody@example.com" in done.stderr
    for email in sandbox_users(4):
        assert_provisioned(deployment, email)
    status = json.loads(
        deployment.syncd("status", "--user", "nobody@example.com", "--format", "json").stdout
    )["users"][0]
    # Its first call to Gmail is check_existing's identity lookup (policy.existing_credentials):
    # it fails there, before any KMS key or certificate is made for it.
    assert status["state"] == "failed" and status["step"] == "check_existing"
    assert status["last_error"] and status["attempts"] == 1

    # The next pass holds it until its backoff has elapsed, and says so.
    plan = json.loads(deployment.syncd("plan", "--format", "json").stdout)["plan"]
    assert plan["actions"] == []
    [held] = plan["held"]
    assert held["email"] == "nobody@example.com" and "next try after" in held["reason"]


def test_transient_google_errors_are_retried(deployment: Deployment) -> None:
    # About a third of all requests fail here: a step needs a budget that makes giving up
    # within one pass improbable (0.33**13 a step), since this pass must finish every user.
    deployment.update_config(pipeline={"step_retries": 12})
    deployment.admin(
        "POST", "faults", {"error_503": 0.2, "error_429": 0.06, "drop": 0.03, "drop_after": 0.03}
    )
    done = deployment.syncd("sync", "--once")
    deployment.admin("POST", "faults", {})
    assert done.returncode == 0, done.stderr
    for email in sandbox_users(6):
        assert_provisioned(deployment, email)


def test_resync_repairs_and_force_replaces(deployment: Deployment) -> None:
    assert deployment.syncd("sync", "--once").returncode == 0
    email = sandbox_users(6)[1]
    first = assert_provisioned(deployment, email)
    gmail = deployment.gmail()
    gmail.delete_identity(email)
    gmail.disable_keypair(email, first)

    repaired = deployment.syncd("resync", "--user", email)
    assert repaired.returncode == 0, repaired.stderr
    assert assert_provisioned(deployment, email) == first
    twice = deployment.syncd("resync", "--user", email, "--user", email.upper())
    assert twice.returncode == 0, twice.stderr  # one task, not two for one user

    forced = deployment.syncd("resync", "--user", email, "--force")
    assert forced.returncode == 0, forced.stderr
    keypairs, identity = gmail_state(deployment, email)
    assert len(_enabled(keypairs)) == 2  # the old one stays enabled so old mail decrypts
    assert identity is not None and identity["primaryKeyPairId"] != first

    unknown = deployment.syncd("resync", "--user", "ghost@example.com")
    assert unknown.returncode == 1 and "unknown user: ghost@example.com" in unknown.stderr


def test_certificates_about_to_expire_are_renewed(deployment: Deployment) -> None:
    assert deployment.syncd("sync", "--once").returncode == 0
    before = {e: assert_provisioned(deployment, e) for e in sandbox_users(6)}
    # Eleven months pass, for syncd: it plans from the dates its state store keeps, so they move
    # back 340 days (the certificates in Gmail keep their real dates; nothing here reads them).
    # Each 365-day certificate now expires in 25 days, inside renew_before_days (30), and is
    # past half its validity (renewal's guard against renewing a fresh one).
    assert age_key_pairs(deployment.config.state.url, 340) == 6
    plan = json.loads(deployment.syncd("plan", "--format", "json").stdout)["plan"]
    assert {(a["action"], a["code"]) for a in plan["actions"]} == {("renew", "expiring")}
    assert deployment.syncd("sync", "--once").returncode == 0
    for email, old in before.items():
        keypairs, identity = gmail_state(deployment, email)
        assert identity is not None and identity["primaryKeyPairId"] != old
        assert {kp["keyPairId"] for kp in _enabled(keypairs)} >= {old}


def test_a_suspended_mailbox_is_deprovisioned_without_gmail(deployment: Deployment) -> None:
    """Gmail refuses every call for a suspended user; deprovisioning still completes."""
    assert deployment.syncd("sync", "--once").returncode == 0
    users = sandbox_users(6)
    directory_file = deployment.root / "sandbox" / "directory.json"
    directory = json.loads(directory_file.read_text())
    for record in directory["users"]:
        if record["primaryEmail"] == users[2]:
            record["suspended"] = True
    directory_file.write_text(json.dumps(directory))
    deployment.set_users(users, disabled=(users[2],))

    done = deployment.syncd("sync", "--once")
    assert done.returncode == 0, done.stderr
    status = json.loads(deployment.syncd("status", "--user", users[2], "--format", "json").stdout)[
        "users"
    ][0]
    assert status["state"] == "deprovisioned"
    history = json.loads(
        deployment.syncd("history", "--user", users[2], "--format", "json").stdout
    )["events"]
    skipped = [e for e in history if e["action"] == "deprovision.delete_identity"]
    assert "mailbox unavailable" in skipped[0]["detail"]["gmail"]
    revoked = [e for e in history if e["action"] == "deprovision.revoke_keys"]
    assert len(revoked[0]["detail"]["revoked"]) == 1
