"""`syncd ca import --kms-private-key-id ID --chain PEM`: adopting an issuer whose private key
is already in the KMS (imported with the KMS's own tools), here the embedded backend."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from syncd.app.context import App
from syncd.config import load_config
from syncd.pki.chain import parse_pkcs7
from syncd.state.models import Issuer
from tests.support.testca import CAKey, new_key

from .conftest import Installation


def _key_in_kms(inst: Installation, private_key: CAKey) -> str:
    """Put a key into the configured KMS as another tool would (not through syncd ca)."""
    app = App(load_config(inst.config_path))
    ref = app.key_manager().import_private_key("cosmian-cli-import", private_key)
    app.database.close()
    return ref.private_key_id


def _chain_file(inst: Installation, name: str, *certs: x509.Certificate) -> Path:
    path = inst.root / name
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def test_adopts_the_issuer_whose_key_is_in_the_kms(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    h = inst.hierarchy
    key_id = _key_in_kms(inst, h.intermediate_key)
    # The chain in any order: the issuer is the certificate holding the KMS key's public key.
    chain = _chain_file(inst, "chain.pem", h.root_cert, h.intermediate_cert)
    out = inst.ok("ca", "import", "--kms-private-key-id", key_id, "--chain", str(chain))
    assert "adopted issuing CA 'test'" in out and key_id in out

    [issuer] = json.loads(inst.ok("ca", "show", "--format", "json"))["issuers"]
    assert issuer["kms_private_key_id"] == key_id
    assert issuer["kms_backend"] == "local"
    assert issuer["subject"] == h.intermediate_cert.subject.rfc4514_string()
    assert [c["subject"] for c in issuer["chain"]] == [h.root_cert.subject.rfc4514_string()]

    # The adopted key signs: a certificate issued through it verifies with openssl.
    inst.ok("cert", "issue", "carol@example.com", "--out", str(inst.root / "out"))
    certs = parse_pkcs7((inst.root / "out" / "carol@example.com.p7pem").read_bytes())
    leaf = next(c for c in certs if c.subject != h.intermediate_cert.subject)
    leaf_pem = _chain_file(inst, "leaf.pem", leaf)
    root_pem = _chain_file(inst, "root.pem", h.root_cert)
    inter_pem = _chain_file(inst, "inter.pem", h.intermediate_cert)
    done = subprocess.run(
        ["openssl", "verify", "-purpose", "smimesign", "-CAfile", str(root_pem),
         "-untrusted", str(inter_pem), str(leaf_pem)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_refuses_a_key_that_matches_no_certificate(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    h = inst.hierarchy
    other_id = _key_in_kms(inst, new_key("rsa"))
    chain = _chain_file(inst, "chain.pem", h.intermediate_cert, h.root_cert)
    result = inst.syncd("ca", "import", "--kms-private-key-id", other_id, "--chain", str(chain))
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"--chain {chain}: no certificate in it holds the public key" in line
    assert other_id in line
    app = App(load_config(inst.config_path))
    with app.database.sessions() as session:
        assert session.scalars(select(Issuer)).all() == []  # nothing stored


def test_unknown_key_id_and_bad_option_combinations(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    h = inst.hierarchy
    chain = _chain_file(inst, "chain.pem", h.intermediate_cert, h.root_cert)
    unknown = inst.syncd("ca", "import", "--kms-private-key-id", "nope", "--chain", str(chain))
    assert unknown.code != 0
    assert unknown.stderr.strip().splitlines() == ["syncd: no key nope in the local KMS"]
    no_chain = inst.syncd("ca", "import", "--kms-private-key-id", "x")
    assert no_chain.code == 2 and "needs --chain PEM" in no_chain.stderr
    both = inst.syncd("ca", "import", str(h.issuer_p12), "--kms-private-key-id", "x")
    assert both.code == 2 and "cannot be used with a PKCS12 file" in both.stderr
    neither = inst.syncd("ca", "import")
    assert neither.code == 2 and "give the issuer's PKCS12 file" in neither.stderr
