"""Certificates made by the KMS (KMIP Certify) in syncd's credential path.

A Cosmian 4.x server has no KMIP Sign. With ``kms.kmip.signing: auto`` the first certificate's
Sign is refused, and syncd asks the KMS to Certify the key instead, from then on. Here the KMS
is the bridge playing Cosmian 4.x in front of the real PyKMIP server (keys, Sign refused as
4.x refuses it); PyKMIP has no Certify, so Certify is OpenSSL itself (``openssl x509 -req``
with the extensions file syncd sends), as Cosmian's server hands it to its OpenSSL. The result
is judged by ``openssl verify -purpose smimesign``.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.credentials.credential import certify
from syncd.credentials.issuers import IssuingCA
from syncd.kms.kmip.json_transport import JsonTransport
from syncd.kms.kmip.manager import KmipKeyManager, SigningMode
from syncd.kms.kmip.transport import CertifyRequest, NotSupportedByServer
from syncd.pki.profile import LeafProfile
from tests.kmip.bridge_fixtures import TOKEN, json_config
from tests.kmip.bridge_fixtures import pykmip_for_json as pykmip_for_json
from tests.kmip.json_bridge import JsonBridge
from tests.kmip.server import PyKmipServer
from tests.kmip.test_json_certify import openssl_certify
from tests.support.testca import TestHierarchy, make_test_hierarchy

EMAIL = "alice@example.com"
PROFILE = LeafProfile(crl_distribution_points=("http://crl.example.test/issuing.crl",))


class Cosmian4WithOpenSslCertify(JsonTransport):
    """The JSON transport to a 4.x bridge; its Certify goes to OpenSSL with the issuer key."""

    def __init__(self, bridge: JsonBridge, pykmip: PyKmipServer, hierarchy: TestHierarchy,
                 folder: Path) -> None:
        super().__init__(json_config(bridge, pykmip))
        self.hierarchy, self.folder = hierarchy, folder
        self.certified: list[CertifyRequest] = []

    def certify(self, request: CertifyRequest) -> bytes:
        self.certified.append(request)
        der = self.private_key_der(self._private_of(request.public_key_id), "pkcs8")
        key = serialization.load_der_private_key(der, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return openssl_certify(self.folder, self.hierarchy, key, request.subject,
                               request.extensions_conf, request.validity_days)

    def _private_of(self, public_key_id: str) -> str:
        label = self.certified[-1].label
        return next(p.private_key_id for p in self.locate(label)
                    if p.public_key_id == public_key_id)


@pytest.fixture(scope="module")
def hierarchy() -> TestHierarchy:
    return make_test_hierarchy()


def _issuer(hierarchy: TestHierarchy) -> IssuingCA:
    return IssuingCA("corp", hierarchy.intermediate_cert, [hierarchy.root_cert], "issuer-sk")


def _verify(hierarchy: TestHierarchy, leaf_pem: bytes, folder: Path) -> None:
    pem = serialization.Encoding.PEM
    (folder / "root.pem").write_bytes(hierarchy.root_cert.public_bytes(pem))
    (folder / "chain.pem").write_bytes(hierarchy.intermediate_cert.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf_pem)
    verified = subprocess.run(
        ["openssl", "verify", "-purpose", "smimesign", "-CAfile", str(folder / "root.pem"),
         "-untrusted", str(folder / "chain.pem"), str(folder / "leaf.pem")],
        capture_output=True, text=True,
    )
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize("signing", ["auto", "certify"])
def test_a_kms_without_sign_certifies_the_leaf(
    signing: SigningMode, pykmip_for_json: PyKmipServer, hierarchy: TestHierarchy,
    tmp_path: Path,
) -> None:
    bridge = JsonBridge(pykmip_for_json, TOKEN, version="4.24.0 (OpenSSL 3.2.0-non-FIPS)")
    transport = Cosmian4WithOpenSslCertify(bridge, pykmip_for_json, hierarchy, tmp_path)
    kms = KmipKeyManager(transport, signing=signing, wrapping_key=b"k" * 32)
    try:
        key = kms.create_key_pair(f"syncd:{EMAIL}:{signing}", 2048)
        now = dt.datetime.now(dt.UTC)
        certificate, chain = certify(EMAIL, key, kms, _issuer(hierarchy), PROFILE, now)
        assert kms.signing_mode() == "certify"
        assert [r.public_key_id for r in transport.certified] == [key.public_key_id]
        assert transport.certified[0].issuer_private_key_id == "issuer-sk"
        assert "BEGIN PKCS7" in chain
        _verify(hierarchy, certificate.public_bytes(serialization.Encoding.PEM), tmp_path)
    finally:
        kms.close()
        bridge.stop()


def test_signing_sign_never_falls_back_to_certify(
    pykmip_for_json: PyKmipServer, hierarchy: TestHierarchy, tmp_path: Path
) -> None:
    bridge = JsonBridge(pykmip_for_json, TOKEN, version="4.24.0 (OpenSSL 3.2.0-non-FIPS)")
    transport = Cosmian4WithOpenSslCertify(bridge, pykmip_for_json, hierarchy, tmp_path)
    kms = KmipKeyManager(transport, signing="sign", wrapping_key=b"k" * 32)
    try:
        key = kms.create_key_pair(f"syncd:{EMAIL}:sign", 2048)
        with pytest.raises(NotSupportedByServer, match="no Sign"):
            certify(EMAIL, key, kms, _issuer(hierarchy), PROFILE, dt.datetime.now(dt.UTC))
        assert transport.certified == []
        assert kms.signing_mode() == "sign"
    finally:
        kms.close()
        bridge.stop()
