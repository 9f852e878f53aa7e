"""``syncd google key-pairs create --leaf-certificate-pkcs12-file``: a leaf issued elsewhere,
uploaded with its own private key (imported into the KMS, wrapped for the KACLS)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from syncd.pki.chain import fingerprint
from tests.support.testca import make_test_hierarchy, new_key
from tests.support.testcerts import LeafSpec, build_leaf

from ..conftest import kacls_view
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
    wrapping_key = deployment.config.kacls.wrapping_key.file
    assert wrapping_key is not None
    view = kacls_view(metadata["kaclsData"], wrapping_key.read_bytes())
    assert view.is_pkcs1
    public = key.public_key().public_bytes(serialization.Encoding.PEM, _SPKI)
    assert view.public_pem == public.decode()
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


# --- leaves the KACLS cannot use, made with plain openssl -----------------------------------

_LEAF_EXTENSIONS = """[v3]
basicConstraints = critical, CA:FALSE
{key_usage}extendedKeyUsage = emailProtection
subjectAltName = email:{user}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def _openssl_pkcs12(
    deploy: Deployment, folder: Path, user: str, *, key_algorithm: str, key_usage: str | None
) -> tuple[Path, Path]:
    """A leaf for ``user`` signed by the deployment's intermediate with ``openssl x509``, put
    into a PKCS#12 file with ``openssl pkcs12 -export`` (with the intermediate and the root)."""
    hierarchy = deploy.hierarchy
    inter_key = folder / "intermediate.key"
    inter_key.write_bytes(
        hierarchy.intermediate_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    inter_pem, chain_pem = folder / "intermediate.pem", folder / "chain.pem"
    inter_pem.write_bytes(hierarchy.intermediate_cert.public_bytes(serialization.Encoding.PEM))
    chain_pem.write_bytes(
        inter_pem.read_bytes() + hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
    )
    key, csr, leaf = folder / "leaf.key", folder / "leaf.csr", folder / "leaf.pem"
    if key_algorithm == "ec":
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", str(key))
    else:
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={user}", "-out", str(csr))
    extfile = folder / "leaf.cnf"
    usage_line = f"keyUsage = critical, {key_usage}\n" if key_usage else ""
    extfile.write_text(_LEAF_EXTENSIONS.format(key_usage=usage_line, user=user))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(inter_pem), "-CAkey", str(inter_key),
             "-set_serial", "4242", "-days", "30", "-sha256", "-extfile", str(extfile),
             "-extensions", "v3", "-out", str(leaf))
    p12, password = folder / "leaf.p12", folder / "leaf.pass"
    password.write_text("p12 secret\n")
    password.chmod(0o600)
    _openssl("pkcs12", "-export", "-inkey", str(key), "-in", str(leaf), "-certfile",
             str(chain_pem), "-passout", "pass:p12 secret", "-out", str(p12))
    return p12, password


def _refused_before_upload(deploy: Deployment, user: str, p12: Path, password: Path) -> str:
    keys_before = deploy.kms_key_count()
    message = error_line(deploy, 2, *_create_args(user, p12, password))
    assert gmail_state(deploy, user) == ([], None)  # nothing in the sandbox
    assert _uploads(deploy) == 0
    assert deploy.kms_key_count() == keys_before and manual_kms_keys(deploy, user) == []
    assert audit_events(deploy, user) == []
    return message


def test_pkcs12_leaf_with_an_ec_key_is_refused(deployment: Deployment, tmp_path: Path) -> None:
    user = "user16@example.com"
    p12, password = _openssl_pkcs12(
        deployment, tmp_path, user, key_algorithm="ec",
        key_usage="digitalSignature, keyAgreement",
    )
    message = _refused_before_upload(deployment, user, p12, password)
    assert message == (
        f"{p12}: leaf refused: leaf: EC key on curve secp256r1; the KACLS decrypts and signs "
        "with RSA keys only: use an RSA 2048, 3072 or 4096 key"
    )


def test_pkcs12_leaf_without_key_usage_is_refused(deployment: Deployment, tmp_path: Path) -> None:
    user = "user17@example.com"
    p12, password = _openssl_pkcs12(
        deployment, tmp_path, user, key_algorithm="rsa", key_usage=None
    )
    message = _refused_before_upload(deployment, user, p12, password)
    assert message == (
        f"{p12}: leaf refused: leaf: no keyUsage extension; an S/MIME leaf needs one with "
        "digitalSignature and keyEncipherment"
    )
