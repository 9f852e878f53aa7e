"""Acceptance of the foundation: `syncd cert issue` output works with OpenSSL end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncd.pki.chain import parse_pkcs7

from ..conftest import kacls_view
from .conftest import Installation


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout


def test_issued_credential_signs_encrypts_and_verifies(installation: Installation) -> None:
    inst = installation
    inst.ok("init")
    inst.root.joinpath("kacls.key").write_bytes(bytes(range(32)))
    inst.root.joinpath("kacls.key").chmod(0o600)
    inst.import_ca()
    out = inst.root / "out"
    inst.ok("cert", "issue", "Alice@Example.com", "--out", str(out))

    chain_file = out / "alice@example.com.p7pem"
    wrap_file = out / "alice@example.com.wrap"
    assert chain_file.read_text().startswith("-----BEGIN PKCS7-----")
    assert wrap_file.stat().st_mode & 0o777 == 0o600
    wrapped = json.loads(wrap_file.read_text())
    assert wrapped["kacls_url"] == "https://kacls.example.test/google_cse"

    certs = parse_pkcs7(chain_file.read_bytes())
    leaf = next(c for c in certs if c.subject != inst.hierarchy.intermediate_cert.subject)
    assert len(certs) == 2  # leaf and the issuing intermediate; never the root
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
    leaf_pem = inst.root / "leaf.pem"
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    root_pem, inter_pem = inst.root / "ca" / "root.pem", inst.root / "ca" / "intermediate.pem"

    _openssl(
        "verify",
        "-purpose",
        "smimesign",
        "-CAfile",
        str(root_pem),
        "-untrusted",
        str(inter_pem),
        str(leaf_pem),
    )

    # The KACLS's view: unwrap kaclsData with the wrapping key; OpenSSL reads a PKCS#1
    # RSAPrivateKey (what Cosmian's KACLS parses), and that key signs and decrypts below.
    view = kacls_view(wrapped["wrapped_private_key"], bytes(range(32)))
    assert view.is_pkcs1
    assert view.traditional_pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    key_file = inst.root / "leaf.key"
    key_file.write_text(view.traditional_pem)
    message = b"Subject: test\r\n\r\nclient-side encrypted hello\r\n"
    signed = _openssl(
        "cms",
        "-sign",
        "-signer",
        str(leaf_pem),
        "-inkey",
        str(key_file),
        "-certfile",
        str(inter_pem),
        "-nodetach",
        "-binary",
        "-outform",
        "PEM",
        stdin=message,
    )
    verified = _openssl(
        "cms",
        "-verify",
        "-inform",
        "PEM",
        "-CAfile",
        str(root_pem),
        "-purpose",
        "smimesign",
        "-binary",
        stdin=signed,
    )
    assert verified == message
    encrypted = _openssl(
        "cms", "-encrypt", "-aes256", "-outform", "PEM", str(leaf_pem), stdin=message
    )
    assert message not in encrypted
    decrypted = _openssl(
        "cms",
        "-decrypt",
        "-inform",
        "PEM",
        "-recip",
        str(leaf_pem),
        "-inkey",
        str(key_file),
        stdin=encrypted,
    )
    assert decrypted == message


def test_ca_show_json_shape(installation: Installation) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    assert json.loads(inst.ok("ca", "show", "--format", "json")) == {"issuers": []}
    inst.import_ca()
    document = json.loads(inst.ok("ca", "show", "--format", "json"))
    [issuer] = document["issuers"]
    assert issuer["label"] == "test"
    assert issuer["subject"] == inst.hierarchy.intermediate_cert.subject.rfc4514_string()
    assert len(issuer["sha256_fingerprint"]) == 64
    assert issuer["chain"][0]["subject"] == inst.hierarchy.root_cert.subject.rfc4514_string()
    assert issuer["not_after"].endswith("Z")
    table = inst.ok("ca", "show")
    assert "SHA-256" in table and issuer["kms_private_key_id"] in table


def test_init_is_idempotent_and_never_overwrites_keys(installation: Installation) -> None:
    inst = installation
    first = inst.ok("init", "--generate-kacls-key")
    assert "created master key" in first and "applied 0001_initial" in first
    master = (inst.root / "master.key").read_bytes()
    second = inst.ok("init", "--generate-kacls-key")
    assert "exists; kept" in second and "schema up to date" in second
    assert (inst.root / "master.key").read_bytes() == master
    assert json.loads(inst.ok("db", "status", "--format", "json"))["database"]["current"] is True


def test_reimport_needs_replace(installation: Installation, tmp_path: Path) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    inst.import_ca()
    again = inst.syncd(
        "ca", "import", str(inst.hierarchy.issuer_p12), "--password-file", str(inst.password_file)
    )
    assert again.code == 2 and "already imported" in again.stderr
    replaced = inst.ok(
        "ca",
        "import",
        str(inst.hierarchy.issuer_p12),
        "--password-file",
        str(inst.password_file),
        "--replace",
    )
    assert "imported issuing CA 'test'" in replaced
