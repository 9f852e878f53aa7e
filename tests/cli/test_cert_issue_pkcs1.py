"""``syncd cert issue EMAIL --out DIR`` writes kaclsData whose plaintext is a PKCS#1
RSAPrivateKey (not PKCS#8), the leaf's own key: checked with OpenSSL after unwrapping with the
KACLS key by AES-GCM directly (not through syncd's unwrap helper). The kmip variant of this
check is in tests/kmip."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from syncd.pki.chain import parse_pkcs7
from tests.support.testca import write_private_file

from .conftest import P12_PASSWORD, Installation


def _openssl(*args: str) -> str:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"
    return done.stdout


def assert_pkcs1_of_leaf(out: Path, email: str, kacls_key: bytes) -> None:
    """The kaclsData of ``email`` in ``out`` unwraps to the PKCS#1 key of its leaf."""
    wrapped = json.loads((out / f"{email}.wrap").read_text())["wrapped_private_key"]
    sealed = base64.b64decode(wrapped, validate=True)
    der = AESGCM(kacls_key).decrypt(sealed[:12], sealed[12:], None)
    key_file = out / "plaintext.der"
    key_file.write_bytes(der)
    checked = _openssl("rsa", "-inform", "DER", "-in", str(key_file), "-check", "-noout")
    assert "RSA key ok" in checked
    # RSAPrivateKey ::= SEQUENCE { version 0, modulus, publicExponent, ... }; a PKCS#8
    # PrivateKeyInfo would hold SEQUENCE { version, AlgorithmIdentifier (rsaEncryption), ... }.
    parsed = _openssl("asn1parse", "-inform", "DER", "-in", str(key_file)).splitlines()
    assert "SEQUENCE" in parsed[0]
    assert parsed[1].split()[-1] == ":00" and "INTEGER" in parsed[1]
    assert all("INTEGER" in line for line in parsed[1:9]), parsed
    assert len(parsed) == 10 and not any("rsaEncryption" in line for line in parsed)
    leaf = next(
        cert
        for cert in parse_pkcs7((out / f"{email}.p7pem").read_bytes())
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    )
    leaf_file = out / "leaf.pem"
    leaf_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_modulus = _openssl("rsa", "-inform", "DER", "-in", str(key_file), "-modulus", "-noout")
    assert key_modulus == _openssl("x509", "-in", str(leaf_file), "-modulus", "-noout")


def test_cert_issue_writes_pkcs1_kacls_data(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    (inst.root / "ca").mkdir()
    write_private_file(inst.password_file, P12_PASSWORD)
    inst.import_ca()
    out = inst.root / "out"
    inst.ok("cert", "issue", "dora@example.com", "--out", str(out))
    assert_pkcs1_of_leaf(out, "dora@example.com", (inst.root / "kacls.key").read_bytes())
