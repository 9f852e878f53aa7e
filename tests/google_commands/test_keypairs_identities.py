"""``syncd google key-pairs`` and ``syncd google identities`` against the sandbox, through the
real executable, the real Google client libraries over HTTP and a real state store."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncd.pki.chain import fingerprint

from ..conftest import kacls_view
from .conftest import (
    Deployment,
    audit_events,
    error_line,
    gmail_state,
    manual_kms_keys,
    ok,
    ok_json,
)

DAY = 86400


def _create(deploy: Deployment, user: str, *options: str) -> str:
    """Create a key pair with the table output, which is the key pair id alone."""
    output = ok(deploy, "google", "key-pairs", "create", user, *options)
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0] and " " not in lines[0], output
    return lines[0]


def test_create_then_insert_leaves_an_identity_on_an_enabled_key_pair(
    deployment: Deployment,
) -> None:
    user = "user00@example.com"
    key_pair_id = _create(deployment, user)
    inserted = ok_json(deployment, "google", "identities", "insert", user, key_pair_id)
    assert inserted == {
        "identity": {
            "user": user,
            "email_address": user,
            "primary_key_pair_id": key_pair_id,
            "signing_key_pair_id": None,
            "encryption_key_pair_id": None,
        }
    }

    keypairs, identity = gmail_state(deployment, user)
    assert [(kp["keyPairId"], kp["enablementState"], kp["subjectEmailAddresses"])
            for kp in keypairs] == [(key_pair_id, "enabled", [user])]
    assert identity == {"emailAddress": user, "primaryKeyPairId": key_pair_id}

    # The uploaded leaf comes from the imported CA, and kaclsData unwraps (with the KACLS key)
    # to the private key of that leaf.
    leaf = x509.load_pem_x509_certificates(keypairs[0]["pem"].encode())[0]
    assert leaf.issuer == deployment.hierarchy.intermediate_cert.subject
    metadata = keypairs[0]["privateKeyMetadata"][0]["kaclsKeyMetadata"]
    assert metadata["kaclsUri"] == deployment.config.kacls.uri
    wrapping_key = deployment.config.kacls.wrapping_key.file
    assert wrapping_key is not None
    view = kacls_view(metadata["kaclsData"], wrapping_key.read_bytes())
    assert view.is_pkcs1  # kacls.private_key_format defaults to pkcs1, what Cosmian parses
    assert view.traditional_pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public = leaf.public_key().public_bytes(serialization.Encoding.PEM, spki)
    assert view.public_pem == public.decode()
    assert manual_kms_keys(deployment, user) == ["active"]

    events = [(e["action"], e["detail"]) for e in audit_events(deployment, user)]
    assert [action for action, _ in events] == [
        "google.keypair.created",
        "google.identity.inserted",
    ]
    created = events[0][1]
    assert created["key_pair_id"] == key_pair_id
    assert created["source"] == "issued"
    assert created["sha256"] == fingerprint(leaf)
    assert events[1][1] == {"key_pair_id": key_pair_id}


def test_identity_on_another_users_key_pair_is_refused(deployment: Deployment) -> None:
    owner, other = "user01@example.com", "user02@example.com"
    key_pair_id = _create(deployment, owner)
    message = error_line(deployment, 1, "google", "identities", "insert", other, key_pair_id)
    assert message.startswith(f"Gmail refused identities.create for {other}: ")
    status = message.split(": ")[1].split()[0]
    assert status in ("400", "403"), message
    assert key_pair_id in message
    assert gmail_state(deployment, other) == ([], None)
    assert audit_events(deployment, other) == []
    # The owner's key pair is untouched and still free to use.
    ok(deployment, "google", "identities", "insert", owner, key_pair_id)


def test_key_pair_get_list_disable_enable_obliterate(deployment: Deployment) -> None:
    user = "user03@example.com"
    key_pair_id = _create(deployment, user, "--rsa-bits", "3072")

    shown = ok_json(deployment, "google", "key-pairs", "get", user, key_pair_id)["keypair"]
    keypairs, _ = gmail_state(deployment, user)
    leaf = x509.load_pem_x509_certificates(keypairs[0]["pem"].encode())[0]
    assert shown["user"] == user
    assert shown["key_pair_id"] == key_pair_id
    assert shown["enablement_state"] == "enabled"
    assert shown["subject_email_addresses"] == [user]
    assert shown["disable_time"] is None
    assert shown["subject"] == f"CN={user}"
    assert shown["sha256_fingerprint"] == fingerprint(leaf)
    assert shown["serial"] == format(leaf.serial_number, "x")
    assert shown["not_after"] == leaf.not_valid_after_utc.isoformat().replace("+00:00", "Z")
    assert shown["pem"] == keypairs[0]["pem"]
    public_key = leaf.public_key()
    assert getattr(public_key, "key_size", None) == 3072
    assert "kaclsData" not in str(shown) and "kacls_data" not in str(shown)

    listed = ok_json(deployment, "google", "key-pairs", "list", user)
    assert listed == {"keypairs": [shown]}
    table = ok(deployment, "google", "key-pairs", "list", user).splitlines()
    assert table[0].split() == ["key", "pair", "state", "emails", "expires", "disabled", "at"]
    assert table[2].split()[:3] == [key_pair_id, "enabled", user]
    record = ok(deployment, "google", "key-pairs", "get", user, key_pair_id)
    assert f"SHA-256      {fingerprint(leaf)}" in record

    disabled = ok_json(deployment, "google", "key-pairs", "disable", user, key_pair_id)
    assert disabled["keypair"]["enablement_state"] == "disabled"
    assert disabled["keypair"]["disable_time"]
    message = error_line(deployment, 1, "google", "identities", "insert", user, key_pair_id)
    assert "disabled" in message
    message = error_line(deployment, 1, "google", "key-pairs", "obliterate", user, key_pair_id)
    assert message.startswith(f"Gmail refused keypairs.obliterate for {user}: ")

    enabled = ok_json(deployment, "google", "key-pairs", "enable", user, key_pair_id)
    assert enabled["keypair"]["enablement_state"] == "enabled"
    assert enabled["keypair"]["disable_time"] is None
    ok(deployment, "google", "key-pairs", "disable", user, key_pair_id)
    deployment.admin("POST", "clock", {"advance_seconds": 31 * DAY})
    assert ok(deployment, "google", "key-pairs", "obliterate", user, key_pair_id).strip() == (
        f"obliterated key pair {key_pair_id} of {user}"
    )
    assert gmail_state(deployment, user) == ([], None)
    message = error_line(deployment, 1, "google", "key-pairs", "get", user, key_pair_id)
    assert message.startswith(f"Gmail refused keypairs.get for {user}: 404 ")

    actions = [(e["action"], e["detail"]) for e in audit_events(deployment, user)]
    assert [action for action, _ in actions] == [
        "google.keypair.created",
        "google.keypair.disabled",
        "google.keypair.enabled",
        "google.keypair.disabled",
        "google.keypair.obliterated",
    ]
    assert all(detail["key_pair_id"] == key_pair_id for _, detail in actions)


def test_identity_list_get_patch_delete(deployment: Deployment) -> None:
    user = "user04@example.com"
    first = _create(deployment, user)
    second = _create(deployment, user)
    assert ok_json(deployment, "google", "identities", "list", user) == {"identities": []}
    message = error_line(deployment, 1, "google", "identities", "get", user)
    assert message.startswith(f"Gmail refused identities.get for {user}: 404 ")

    ok(deployment, "google", "identities", "insert", user, first)
    patched = ok_json(deployment, "google", "identities", "patch", user, second)
    assert patched["identity"]["primary_key_pair_id"] == second
    shown = ok_json(deployment, "google", "identities", "get", user)["identity"]
    assert shown == patched["identity"]
    assert ok_json(deployment, "google", "identities", "list", user) == {"identities": [shown]}
    table = ok(deployment, "google", "identities", "list", user).splitlines()
    assert table[2].split() == [user, second, "-", "-"]
    assert ok(deployment, "google", "identities", "get", user).splitlines()[:2] == [
        f"identity             {user}",
        f"key pair             {second}",
    ]

    deleted = ok_json(deployment, "google", "identities", "delete", user)
    assert deleted == {"identity": {"user": user, "email_address": user, "deleted": True}}
    assert gmail_state(deployment, user)[1] is None
    # Both key pairs stay: deleting an identity leaves them enabled.
    assert sorted(kp["keyPairId"] for kp in gmail_state(deployment, user)[0]) == sorted(
        [first, second]
    )
    message = error_line(deployment, 1, "google", "identities", "delete", user)
    assert message.startswith(f"Gmail refused identities.delete for {user}: 404 ")

    actions = [(e["action"], e["detail"]) for e in audit_events(deployment, user)]
    assert actions[2:] == [
        ("google.identity.inserted", {"key_pair_id": first}),
        ("google.identity.patched", {"key_pair_id": second}),
        ("google.identity.deleted", {}),
    ]


def test_user_address_is_normalised_and_checked(deployment: Deployment) -> None:
    key_pair_id = _create(deployment, "  User05@Example.COM ")
    keypairs, _ = gmail_state(deployment, "user05@example.com")
    assert [kp["keyPairId"] for kp in keypairs] == [key_pair_id]
    message = error_line(deployment, 2, "google", "key-pairs", "list", "not-an-address")
    assert message == "USER: 'not-an-address' is not an email address"
