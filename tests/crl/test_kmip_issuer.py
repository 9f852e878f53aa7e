"""``syncd crl`` with the issuer's key held by a real PyKMIP server (KMIP Sign over the
TBSCertList): openssl verifies the CRL's signature against the issuer and reads the serial
recorded as revoked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from syncd.app.context import App
from syncd.pipeline.steps.base import RevokedCertificate
from syncd.pipeline.steps.revocation import insert_new
from tests.conftest import _migrate
from tests.crl.conftest import OpenSSL, openssl_hex
from tests.kmip.server import start_pykmip_server
from tests.pipeline.conftest import build_deployment
from tests.support.testca import make_test_hierarchy, write_private_file

P12_PASSWORD = b"kmip-crl-test"


def test_a_crl_signed_by_an_issuer_key_in_pykmip(tmp_path: Path, openssl: OpenSSL) -> None:
    ca = make_test_hierarchy(tmp_path / "ca", password=P12_PASSWORD)
    assert ca.issuer_p12 is not None and ca.root_pem is not None
    server = start_pykmip_server(tmp_path / "pykmip")
    try:
        url = f"sqlite:///{tmp_path / 'state.db'}"
        _migrate(url)
        kms = {
            "backend": "kmip",
            "kmip": server.kmip_section(server.client, transport="binary", timeout=10,
                                        server_side_wrap="auto"),
        }
        deploy = build_deployment(tmp_path, url, ca, kms)
        deploy.sandbox.stop()  # no pass here: the CRL needs only the state store and the KMS
        password = tmp_path / "issuer.pass"
        write_private_file(password, P12_PASSWORD)
        imported = deploy.syncd("ca", "import", str(ca.issuer_p12), "--password-file",
                                str(password), "--chain", str(ca.root_pem), "--label", "kmip")
        assert imported.returncode == 0, imported.stderr
        assert "in the kmip KMS" in imported.stdout
        with App(deploy.config) as app, app.database.engine.begin() as connection:
            insert_new(connection, "gone@example.com",
                       [RevokedCertificate(None, "kmip", "1f2e3d", "keyCompromise")],
                       datetime.now(UTC))

        out = tmp_path / "kmip.crl"
        done = deploy.syncd("crl", "--issuer", "kmip", "--output", str(out))
        assert done.returncode == 0, done.stderr
        assert "issuing CA 'kmip'" in done.stdout and "1 revoked" in done.stdout
    finally:
        server.stop()
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                               for c in (ca.intermediate_cert, ca.root_cert)))
    checked = openssl("crl", "-inform", "DER", "-in", out, "-noout", "-CAfile", chain, "-text")
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr
    assert f"Serial Number: {openssl_hex(0x1f2e3d)}\n" in checked.stdout
    assert "Key Compromise" in checked.stdout
