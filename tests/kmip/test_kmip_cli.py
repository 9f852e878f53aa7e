"""The guide's first steps with ``kms.backend: kmip`` through the command line, against the
real PyKMIP server: ``syncd ca import`` puts the issuer key into the KMS, ``syncd cert issue``
creates the user's key there, has the certificate signed there, and writes kaclsData.
Judged by openssl, the KMS's own view and the state store's contents."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from syncd.kms.kmip.binary import BinaryTransport
from syncd.pki.chain import parse_pkcs7
from tests.conftest import kacls_view
from tests.kmip.conftest import KmipConfigFactory
from tests.kmip.server import PyKmipServer
from tests.support.cli import run_syncd
from tests.support.testca import make_test_hierarchy, write_private_file

PASSWORD = b"issuer password"


def _syncd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_syncd(["--config", str(config), *args])


def test_ca_import_and_cert_issue_with_keys_in_the_kms(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory, tmp_path: Path
) -> None:
    hierarchy = make_test_hierarchy(tmp_path / "ca", password=PASSWORD)
    assert hierarchy.issuer_p12 and hierarchy.root_pem and hierarchy.intermediate_pem
    write_private_file(tmp_path / "ca" / "issuer.pass", PASSWORD)
    kacls_key = os.urandom(32)
    write_private_file(tmp_path / "kacls.key", kacls_key)
    files = pykmip_server.client
    config = tmp_path / "syncd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "kms": {
                    "backend": "kmip",
                    "kmip": pykmip_server.kmip_section(files),
                },
                "kacls": {
                    "uri": "https://kacls.example.test/google_cse",
                    "wrapping_key_file": str(tmp_path / "kacls.key"),
                },
                "ca": {"label": "kmip-issuer"},
                "certificate": {
                    "key_bits": 2048,
                    "crl_distribution_points": ["http://crl.example.test/issuing.crl"],
                },
            }
        )
    )
    for args in (
        ("init",),
        (
            "ca",
            "import",
            str(hierarchy.issuer_p12),
            "--password-file",
            str(tmp_path / "ca" / "issuer.pass"),
            "--chain",
            str(hierarchy.root_pem),
        ),
        ("cert", "issue", "alice@example.com", "--out", str(tmp_path / "out")),
    ):
        done = _syncd(config, *args)
        assert done.returncode == 0, f"syncd {' '.join(args)}: {done.stderr}"

    # The certificate: signed by the issuer key the KMS holds, valid for S/MIME signing.
    certs = parse_pkcs7((tmp_path / "out" / "alice@example.com.p7pem").read_bytes())
    leaf = next(c for c in certs if c.subject != hierarchy.intermediate_cert.subject)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "smimesign",
            "-CAfile",
            str(hierarchy.root_pem),
            "-untrusted",
            str(hierarchy.intermediate_pem),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # kaclsData: PKCS#1 by default, the private key of the leaf's public key.
    wrapped = json.loads((tmp_path / "out" / "alice@example.com.wrap").read_text())
    view = kacls_view(wrapped["wrapped_private_key"], kacls_key)
    assert view.is_pkcs1
    assert (
        view.public_pem
        == leaf.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    # The KMS holds both keys; the state store holds only their ids, no key material.
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("select count(*) from kms_keys").fetchone() == (0,)
        issuer_key_ids = db.execute("select kms_private_key_id from issuers").fetchall()
        (detail,) = db.execute(
            "select detail from audit_log where action = 'cert.issued_debug'"
        ).fetchone()
    user_key_id = json.loads(detail)["kms_key_id"]
    transport = BinaryTransport(kmip_config().kms.kmip)
    try:
        issuer_pairs = transport.locate("issuer:kmip-issuer")
        assert len(issuer_pairs) == 1
        issuer_public = transport.public_key_der(issuer_pairs[0].private_key_id)
        user_public = transport.public_key_der(user_key_id)
    finally:
        transport.close()
    assert issuer_key_ids == [(issuer_pairs[0].private_key_id,)]
    assert issuer_public == _spki(hierarchy.intermediate_key.public_key())
    assert user_public == _spki(leaf.public_key())


def _spki(key: object) -> bytes:
    der: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def test_ca_import_with_the_kms_unreachable_exits_1_with_one_line(
    pykmip_server: PyKmipServer, tmp_path: Path
) -> None:
    files = pykmip_server.client
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    write_private_file(tmp_path / "kacls.key", os.urandom(32))
    config = tmp_path / "syncd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "kms": {
                    "backend": "kmip",
                    "kmip": pykmip_server.kmip_section(files, port=closed_port),
                },
                "kacls": {
                    "uri": "https://kacls.example.test/google_cse",
                    "wrapping_key_file": str(tmp_path / "kacls.key"),
                },
            }
        )
    )
    assert _syncd(config, "init").returncode == 0
    hierarchy = make_test_hierarchy(tmp_path / "ca", password=PASSWORD)
    assert hierarchy.issuer_p12 and hierarchy.root_pem
    write_private_file(tmp_path / "ca" / "issuer.pass", PASSWORD)
    done = _syncd(
        config,
        "ca",
        "import",
        str(hierarchy.issuer_p12),
        "--password-file",
        str(tmp_path / "ca" / "issuer.pass"),
        "--chain",
        str(hierarchy.root_pem),
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"syncd: KMIP server 127.0.0.1:{closed_port}: Locate 'issuer:default': connection refused"
    ], done.stderr
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("select count(*) from issuers").fetchone() == (0,)
