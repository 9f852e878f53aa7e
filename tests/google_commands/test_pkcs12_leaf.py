"""``syncd google key-pairs create --leaf-certificate-pkcs12-file``: a leaf issued elsewhere,
uploaded with its own private key (imported into the KMS, wrapped for the KACLS)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from syncd.kms.kacls import unwrap_private_key
from syncd.pki.chain import fingerprint
from syncd.pki.testca import make_test_hierarchy, new_key
from syncd.pki.testcerts import LeafSpec, build_leaf

from .conftest import (
    Deployment,
    audit_events,
    error_line,
    gmail_state,
    make_leaf,
    manual_kms_keys,
    ok,
    ok_json,
    write_pkcs12,
)

_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_DER = serialization.Encoding.DER


def _create_args(user: str, p12: Path, password: Path) -> list[str]:
    return [
        "google",
        "key-pairs",
        "create",
        user,
        "--leaf-certificate-pkcs12-file",
        str(p12),
        "--leaf-certificate-pkcs12-password-file",
        str(password),
    ]


def _uploads(deploy: Deployment) -> int:
    return deploy.writes().get("keypairs.create", 0)


def test_pkcs12_leaf_is_uploaded_with_its_own_key(deployment: Deployment, tmp_path: Path) -> None:
    user = "user10@example.com"
    hierarchy = deployment.hierarchy
    key, leaf = make_leaf(deployment, user)
    p12, password = write_pkcs12(
        tmp_path, "leaf", key, leaf, [hierarchy.intermediate_cert, hierarchy.root_cert]
    )
    created = ok_json(deployment, *_create_args(user, p12, password))["keypair"]
    assert created["source"] == "pkcs12"
    assert created["sha256_fingerprint"] == fingerprint(leaf)
    assert created["subject_email_addresses"] == [user]
    assert created["enablement_state"] == "enabled"

    keypairs, _ = gmail_state(deployment, user)
    assert [kp["keyPairId"] for kp in keypairs] == [created["key_pair_id"]]
    metadata = keypairs[0]["privateKeyMetadata"][0]["kaclsKeyMetadata"]
    wrapping_key = deployment.config.kacls.wrapping_key_file
    assert wrapping_key is not None
    pkcs8 = unwrap_private_key(metadata["kaclsData"], wrapping_key.read_bytes())
    unwrapped = serialization.load_der_private_key(pkcs8, None)
    assert unwrapped.public_key().public_bytes(_DER, _SPKI) == key.public_key().public_bytes(
        _DER, _SPKI
    )
    assert manual_kms_keys(deployment, user) == ["active"]

    ok(deployment, "google", "identities", "insert", user, created["key_pair_id"])
    assert gmail_state(deployment, user)[1] == {
        "emailAddress": user,
        "primaryKeyPairId": created["key_pair_id"],
    }
    detail = audit_events(deployment, user)[0]["detail"]
    assert detail["source"] == "pkcs12"
    assert detail["kms_key_id"] == created["kms_private_key_id"]


def test_pkcs12_without_intermediates_takes_the_imported_ca_chain(
    deployment: Deployment, tmp_path: Path
) -> None:
    user = "user11@example.com"
    key, leaf = make_leaf(deployment, user)
    p12, password = write_pkcs12(tmp_path, "bare", key, leaf, [])
    key_pair_id = ok(deployment, *_create_args(user, p12, password)).strip()
    keypairs, _ = gmail_state(deployment, user)
    assert [kp["keyPairId"] for kp in keypairs] == [key_pair_id]
    ok(deployment, "google", "identities", "insert", user, key_pair_id)


def test_mismatching_key_is_refused_with_exit_2(deployment: Deployment, tmp_path: Path) -> None:
    user = "user12@example.com"
    hierarchy = deployment.hierarchy
    _, leaf = make_leaf(deployment, user)
    # OpenSSL will not put a key and a certificate it does not match in the same bag pair, so
    # the leaf travels as one of the "other" certificates, the way a mixed-up export arrives.
    p12, password = write_pkcs12(
        tmp_path, "mixed", new_key("rsa"), None, [leaf, hierarchy.intermediate_cert]
    )
    before = _uploads(deployment)
    message = error_line(deployment, 2, *_create_args(user, p12, password))
    assert message == f"{p12}: the private key does not match the certificate CN={user}"
    assert _uploads(deployment) == before
    assert manual_kms_keys(deployment, user) == []
    assert gmail_state(deployment, user) == ([], None)
    assert audit_events(deployment, user) == []


def test_wrong_password_and_wrong_user_are_refused_before_anything_is_made(
    deployment: Deployment, tmp_path: Path
) -> None:
    user = "user13@example.com"
    key, leaf = make_leaf(deployment, "user14@example.com")
    chain = [deployment.hierarchy.intermediate_cert]
    p12, password = write_pkcs12(tmp_path, "other", key, leaf, chain)
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password\n")
    before = _uploads(deployment)
    message = error_line(deployment, 2, *_create_args(user, p12, wrong))
    assert message == f"{p12}: wrong password or damaged PKCS#12 file"
    message = error_line(deployment, 2, *_create_args(user, p12, password))
    assert message.startswith(f"certificate for {user} rejected: ")
    assert "subjectAltName email is user14@example.com, expected user13@example.com" in message
    assert _uploads(deployment) == before
    assert manual_kms_keys(deployment, user) == []
    assert "not the password" not in str(audit_events(deployment, user))


def test_a_leaf_gmail_refuses_leaves_its_kms_key_revoked(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A chain to a root the sandbox does not trust passes the local checks (the file's own
    root stands in for Google's) but Gmail refuses it: exit 1 and the imported key revoked."""
    user = "user15@example.com"
    stranger = make_test_hierarchy(organization="Untrusted Elsewhere")
    key = new_key("rsa")
    leaf = build_leaf(
        LeafSpec(user, key.public_key()), stranger.intermediate_cert, stranger.intermediate_key
    )
    p12, password = write_pkcs12(
        tmp_path, "stranger", key, leaf, [stranger.intermediate_cert, stranger.root_cert]
    )
    message = error_line(deployment, 1, *_create_args(user, p12, password))
    assert message.startswith(f"Gmail refused keypairs.create for {user}: 400 ")
    assert manual_kms_keys(deployment, user) == ["revoked"]
    assert gmail_state(deployment, user) == ([], None)
    assert audit_events(deployment, user) == []
