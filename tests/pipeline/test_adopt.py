"""Credentials made by hand before syncd (policy.existing_credentials), against the sandbox
over HTTP: held by default, adopted, or replaced, never silently re-pointed.

An administrator who followed Google's guide by hand made an RSA key, had the organisation's
CA certify it, wrapped it for the KACLS, uploaded it with ``keypairs.create`` and made it the
user's identity: the tests do the same through the Gmail client before syncd's first pass.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import pkcs7
from sqlalchemy import select

from syncd.app.passes import dry_run, sync_pass
from syncd.domain import ReasonCode
from syncd.kms.ahead import KeysAhead
from syncd.pipeline.steps.adopt import certificate_profile
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from syncd.plan import DesiredProfile
from syncd.state.db import Database
from syncd.state.models import AuditEvent, KeyPair, KmsKey, User
from tests.support.testca import TestHierarchy, make_test_hierarchy
from tests.support.testcerts import LeafSpec, build_leaf

from .conftest import Deployment, gmail_state, sandbox_users
from .test_sync import assert_provisioned

SQLITE_ONLY = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
NOW = datetime.now(UTC)


def hand_made(
    deploy: Deployment,
    email: str,
    ca: TestHierarchy,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    identity: bool = True,
) -> tuple[str, x509.Certificate]:
    """A key pair (and, with ``identity``, the identity pointing at it) made the way the guide
    says, with no syncd code: the key pair's Gmail id and its certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spec = LeafSpec(email, key.public_key())
    spec.not_before = not_before or spec.not_before
    spec.not_after = not_after or spec.not_after
    leaf = build_leaf(spec, ca.intermediate_cert, ca.intermediate_key)
    chain = pkcs7.serialize_certificates(
        [leaf, ca.intermediate_cert], serialization.Encoding.PEM
    ).decode()
    # kaclsData as Cosmian's KACLS reads it: base64(nonce 12 || AES-256-GCM(PKCS#1 DER)).
    wrapping_key = deploy.config.kacls.wrapping_key.file
    assert wrapping_key is not None
    nonce = os.urandom(12)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    sealed = nonce + AESGCM(wrapping_key.read_bytes()).encrypt(nonce, der, None)
    gmail = deploy.gmail()
    uri = deploy.config.kacls.uri
    assert uri is not None
    created = gmail.create_keypair(email, chain, uri, base64.b64encode(sealed).decode())
    key_pair_id = str(created["keyPairId"])
    if identity:
        gmail.create_identity(email, key_pair_id)
    return key_pair_id, leaf


def split_identity(deploy: Deployment, email: str, signing: str, encryption: str) -> None:
    """An identity with separate signing and encryption key pairs (GAM can make one; syncd's
    client makes only one-key-pair identities, so the request is written here)."""
    from syncd.google.gmail import _cse

    body = {
        "emailAddress": email,
        "signAndEncryptKeyPairs": {"signingKeyPairId": signing, "encryptionKeyPairId": encryption},
    }
    deploy.gmail().session.call(
        "identities.create",
        email,
        lambda s: _cse(s, "identities").create(userId=email, body=body),
    )


def _rows(deploy: Deployment, email: str) -> list[KeyPair]:
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            rows = session.scalars(
                select(KeyPair).join(User).where(User.email == email).order_by(KeyPair.generation)
            )
            found = list(rows)
            session.expunge_all()
            return found
    finally:
        database.close()


def _kms_labels(deploy: Deployment) -> list[str]:
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            return list(session.scalars(select(KmsKey.label)))
    finally:
        database.close()


def _audit(deploy: Deployment, email: str, action: str) -> list[dict[str, Any]]:
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            events = session.scalars(
                select(AuditEvent).where(AuditEvent.email == email, AuditEvent.action == action)
            )
            return [dict(event.detail) for event in events]
    finally:
        database.close()


def _held(deploy: Deployment) -> dict[str, tuple[ReasonCode | None, str]]:
    app = deploy.app()
    try:
        return {h.email: (h.code, h.reason) for h in dry_run(app).plan.held}
    finally:
        app.close()


def _only_identity(deploy: Deployment, email: str, key_pair_id: str) -> None:
    """Gmail holds what the administrator made for ``email`` and nothing else."""
    keypairs, identity = gmail_state(deploy, email)
    assert [kp["keyPairId"] for kp in keypairs] == [key_pair_id]
    assert keypairs[0]["enablementState"] == "enabled"
    assert identity is not None and identity["primaryKeyPairId"] == key_pair_id


def test_an_identity_made_by_hand_is_held_then_adopted_as_the_message_says(
    deployment: Deployment, pipeline_ca: TestHierarchy
) -> None:
    users = sandbox_users(3)
    deployment.set_users(users)
    by_hand, leaf = hand_made(deployment, users[1], pipeline_ca)

    first = deployment.syncd("sync", "--once")
    assert first.returncode == 1, first.stderr  # a failure, reported once
    assert "2 done, 1 failed" in first.stdout
    issuer = pipeline_ca.intermediate_cert.subject.rfc4514_string()
    expected = (
        f"existing CSE identity for {users[1]} points at key pair {by_hand}, not made by syncd "
        f"(certificate CN={users[1]}, issued by {issuer}, "
        f"expires {leaf.not_valid_after_utc:%Y-%m-%d}); policy.existing_credentials is hold: "
        f"set it to adopt (take over a valid key pair) or replace, then syncd resync --user "
        f"{users[1]}"
    )
    assert f"failed: {users[1]} (provision) check_existing: {expected}" in first.stderr
    _only_identity(deployment, users[1], by_hand)  # left alone
    for email in (users[0], users[2]):
        assert_provisioned(deployment, email)
    assert not [label for label in _kms_labels(deployment) if users[1] in label], "a key for it"

    # Held, with its code, until the administrator decides; the next pass changes nothing.
    assert _held(deployment) == {users[1]: (ReasonCode.EXISTING_CREDENTIALS, expected)}
    plan = json.loads(deployment.syncd("plan", "--format", "json").stdout)["plan"]
    [held] = plan["held"]
    assert plan["actions"] == [] and (held["email"], held["reason"]) == (users[1], expected)
    writes = deployment.writes()
    again = deployment.syncd("sync", "--once")
    assert again.returncode == 0, again.stderr
    assert "0 done, 0 failed, 1 held" in again.stdout
    assert deployment.writes() == writes

    # What the message says to do: adopt, then resync the user.
    deployment.update_config(policy={"existing_credentials": "adopt"})
    resynced = deployment.syncd("resync", "--user", users[1])
    assert resynced.returncode == 0, resynced.stderr
    _only_identity(deployment, users[1], by_hand)
    [adopted] = [row for row in _rows(deployment, users[1]) if row.status == "active"]
    assert adopted.origin == "adopted" and adopted.gmail_key_pair_id == by_hand
    assert adopted.kms_private_key_id is None
    assert adopted.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex()
    assert adopted.serial_hex == format(leaf.serial_number, "x")
    assert adopted.not_after == leaf.not_valid_after_utc
    assert adopted.certificate_pem == leaf.public_bytes(serialization.Encoding.PEM).decode()
    [event] = _audit(deployment, users[1], "provision.check_existing")
    assert event["adopted"] == by_hand and event["issuer"] == "pipeline"
    assert _held(deployment) == {}


@SQLITE_ONLY
def test_adopt_takes_a_valid_key_pair_over_and_renews_it_when_due(
    deployment: Deployment, pipeline_ca: TestHierarchy
) -> None:
    deployment.update_config(policy={"existing_credentials": "adopt"})
    users = sandbox_users(3)
    deployment.set_users(users)
    current, current_leaf = hand_made(deployment, users[0], pipeline_ca)
    # Made 340 days ago for a year: inside certificate.renew_before_days (30).
    aged, _ = hand_made(
        deployment,
        users[1],
        pipeline_ca,
        not_before=NOW - timedelta(days=340),
        not_after=NOW + timedelta(days=20),
    )

    first = deployment.syncd("sync", "--once")
    assert first.returncode == 0, first.stderr
    assert "3 done, 0 failed" in first.stdout
    _only_identity(deployment, users[0], current)
    _only_identity(deployment, users[1], aged)
    assert_provisioned(deployment, users[2])
    assert [label for label in _kms_labels(deployment) if "@" in label] == [
        label for label in _kms_labels(deployment) if users[2] in label
    ], "a KMS key was made for an adopted user"
    [row] = _rows(deployment, users[0])
    assert (row.status, row.origin, row.gmail_key_pair_id) == ("active", "adopted", current)
    assert row.key_bits == 2048
    assert row.profile == {
        "key_bits": 2048,
        "hash": "sha256",
        "crl": [],
        "aia_ca_issuers": [],
        "aia_ocsp": [],
        "issuer": "pipeline",
        "aliases": [],
    }
    assert row.not_before == current_leaf.not_valid_before_utc.replace(microsecond=0)
    status = json.loads(deployment.syncd("status", "--format", "json").stdout)["users"]
    assert {r["email"]: r["state"] for r in status} == dict.fromkeys(users, "active")

    # The aged one is renewed like any other credential: a key in syncd's KMS, a key pair of
    # syncd's, the identity pointed at it; the adopted key pair stays enabled for old mail.
    plan = json.loads(deployment.syncd("plan", "--format", "json").stdout)["plan"]
    assert [(a["email"], a["action"]) for a in plan["actions"]] == [(users[1], "renew")]
    renewed = deployment.syncd("sync", "--once")
    assert renewed.returncode == 0, renewed.stderr
    keypairs, identity = gmail_state(deployment, users[1])
    assert {kp["keyPairId"]: kp["enablementState"] for kp in keypairs}[aged] == "enabled"
    assert identity is not None and identity["primaryKeyPairId"] != aged
    old, new = _rows(deployment, users[1])
    assert (old.origin, old.status) == ("adopted", "superseded")
    assert (new.origin, new.status) == ("syncd", "active")
    assert new.gmail_key_pair_id == identity["primaryKeyPairId"] and new.kms_private_key_id
    assert any(users[1] in label for label in _kms_labels(deployment))
    assert not _audit(deployment, users[1], "renew.insert_identity")[0].get("replaced_existing")
    _only_identity(deployment, users[0], current)

    # An adopted user who leaves: identity deleted, the adopted key pair disabled (found by its
    # certificate), no KMS key to revoke and nothing else revoked.
    deployment.update_config(policy={"deprovision_after": 0})
    deployment.set_users(users[1:])
    left = deployment.syncd("sync", "--once")
    assert left.returncode == 0, left.stderr
    keypairs, identity = gmail_state(deployment, users[0])
    assert identity is None
    assert [(kp["keyPairId"], kp["enablementState"]) for kp in keypairs] == [(current, "disabled")]
    [row] = _rows(deployment, users[0])
    assert (row.status, row.origin) == ("disabled", "adopted")
    assert _audit(deployment, users[0], "deprovision.revoke_keys") == [{"revoked": []}]


@SQLITE_ONLY
def test_replace_repoints_the_identity_and_audits_what_it_replaced(
    deployment: Deployment, pipeline_ca: TestHierarchy
) -> None:
    deployment.update_config(policy={"existing_credentials": "replace"})
    users = sandbox_users(2)
    deployment.set_users(users)
    by_hand, _ = hand_made(deployment, users[0], pipeline_ca)
    done = deployment.syncd("sync", "--once")
    assert done.returncode == 0, done.stderr
    keypairs, identity = gmail_state(deployment, users[0])
    [ours] = _rows(deployment, users[0])
    assert identity is not None and identity["primaryKeyPairId"] == ours.gmail_key_pair_id
    assert ours.gmail_key_pair_id != by_hand and ours.origin == "syncd"
    # The hand-made key pair is not syncd's to disable: it stays, so old mail decrypts.
    assert {kp["keyPairId"] for kp in keypairs} == {by_hand, ours.gmail_key_pair_id}
    [event] = _audit(deployment, users[0], "provision.insert_identity")
    assert event == {
        "key_pair_id": ours.gmail_key_pair_id,
        "previous_key_pair_id": by_hand,
        "replaced_existing": by_hand,
    }
    assert not _audit(deployment, users[1], "provision.insert_identity")[0].get("replaced_existing")


@SQLITE_ONLY
def test_adopt_holds_what_it_cannot_take_over_with_the_reason(
    deployment: Deployment, pipeline_ca: TestHierarchy
) -> None:
    # A CA Google trusts but syncd never imported (ca import): its leaves upload to Gmail.
    other = make_test_hierarchy(organization="Elsewhere")
    roots = deployment.root / "sandbox" / "trusted_roots.pem"
    roots.write_bytes(roots.read_bytes() + other.root_cert.public_bytes(serialization.Encoding.PEM))
    deployment.update_config(policy={"existing_credentials": "adopt"})
    users = sandbox_users(5)
    deployment.set_users(users)
    foreign, _ = hand_made(deployment, users[0], other)
    disabled, _ = hand_made(deployment, users[1], pipeline_ca)
    deployment.gmail().disable_keypair(users[1], disabled)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    hand_made(deployment, users[2], pipeline_ca, not_after=expires)
    signing, _ = hand_made(deployment, users[3], pipeline_ca, identity=False)
    encryption, _ = hand_made(deployment, users[3], pipeline_ca, identity=False)
    split_identity(deployment, users[3], signing, encryption)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() + 1))

    done = deployment.syncd("sync", "--once")
    assert done.returncode == 1
    assert "1 done, 4 failed" in done.stdout
    assert_provisioned(deployment, users[4])
    held = _held(deployment)
    assert {email: code for email, (code, _) in held.items()} == dict.fromkeys(
        users[:4], ReasonCode.EXISTING_CREDENTIALS
    )
    issuer = other.intermediate_cert.subject.rfc4514_string()
    assert (
        f"policy.existing_credentials is adopt, but it cannot be adopted: chain: no issuer "
        f"found for leaf CN={users[0]} (issuer {issuer}); its certificate is not issued by an "
        f"imported issuing CA (pipeline). Replace it by hand, or set "
        f"policy.existing_credentials to replace, then syncd resync --user {users[0]}"
    ) in held[users[0]][1]
    assert "cannot be adopted: the key pair is disabled, not enabled." in held[users[1]][1]
    assert f"cannot be adopted: leaf: expired on {expires:%Y-%m-%dT%H:%M:%SZ}" in held[users[2]][1]
    assert held[users[3]][1] == (
        f"existing CSE identity for {users[3]} points at key pairs {signing} (signing) and "
        f"{encryption} (encryption), not made by syncd; policy.existing_credentials is adopt, "
        "but it cannot be adopted: syncd adopts an identity with one key pair for signing and "
        "encryption. Replace it by hand, or set policy.existing_credentials to replace, then "
        f"syncd resync --user {users[3]}"
    )
    keypairs, identity = gmail_state(deployment, users[0])
    assert [kp["keyPairId"] for kp in keypairs] == [foreign]
    assert identity is not None and identity["primaryKeyPairId"] == foreign
    keypairs, identity = gmail_state(deployment, users[1])
    assert [(kp["keyPairId"], kp["enablementState"]) for kp in keypairs] == [(disabled, "disabled")]
    assert identity is not None and identity["primaryKeyPairId"] == disabled
    made = [label for label in _kms_labels(deployment) if "@" in label]
    assert made and all(users[4] in label for label in made), "a KMS key for a held user"


def test_an_adopted_certificate_is_described_as_syncd_describes_its_own(
    pipeline_ca: TestHierarchy,
) -> None:
    """What adoption records of a certificate compares key by key with what syncd records of
    one it issues (DesiredProfile.record, less the subject template no certificate states)."""
    desired = DesiredProfile(
        key_bits=2048,
        hash="sha384",
        crl=("http://crl.example.com/issuing.crl",),
        aia_ca_issuers=("http://pki.example.com/issuing.cer",),
        aia_ocsp=("http://ocsp.example.com/",),
        issuer="pipeline",
    )
    profile = LeafProfile(
        hash="sha384",
        crl_distribution_points=desired.crl,
        aia_ca_issuers=desired.aia_ca_issuers,
        aia_ocsp=desired.aia_ocsp,
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "user00@example.com"
    leaf = issue_leaf(
        email, key.public_key(), pipeline_ca.intermediate_cert, pipeline_ca.signer("sha384"),
        profile, NOW,
    )  # fmt: skip
    expected = desired.record()
    del expected["subject_template"]
    assert certificate_profile(leaf, email, "pipeline") == expected


@SQLITE_ONLY
def test_a_held_users_key_generated_ahead_is_dropped_as_its_task_ends(
    deployment: Deployment, pipeline_ca: TestHierarchy, monkeypatch: pytest.MonkeyPatch
) -> None:
    [held] = sandbox_users(1)  # alone, so no other user's key is waiting meanwhile
    deployment.set_users([held])
    hand_made(deployment, held, pipeline_ca)
    waiting: dict[str, int] = {}
    original_discard = KeysAhead.discard

    def recording_discard(self: KeysAhead, label: str, bits: int) -> None:
        original_discard(self, label, bits)
        waiting[label] = self.waiting()

    monkeypatch.setattr(KeysAhead, "discard", recording_discard)
    app = deployment.app()
    try:
        result = sync_pass(app)
    finally:
        app.close()
    assert [(r.email, r.ok) for r in result.results] == [(held, False)]
    # Dropped as its task ended, not at the end of the pass: a long pass with many held
    # users would otherwise queue their keys ahead of everyone else's.
    assert [held in label for label in waiting] == [True]
    assert list(waiting.values()) == [0]
    assert not [label for label in _kms_labels(deployment) if held in label]
