"""Loading PKCS#12 files written by syncd's test CA, by cryptography and by openssl."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from syncd.errors import CertificateError, ConfigError
from syncd.pki.pkcs12 import key_matches_certificate, load_pkcs12
from tests.support.testca import TestHierarchy, make_test_hierarchy

if TYPE_CHECKING:
    from conftest import OpenSSL, Workdir

PASSWORD = b"correct horse battery staple"  # the password tests/pki/conftest.py uses
ENCRYPTION = serialization.BestAvailableEncryption(b"pw")


def _p12(hierarchy: TestHierarchy) -> bytes:
    assert hierarchy.issuer_p12 is not None
    return hierarchy.issuer_p12.read_bytes()


def test_issuer_p12_from_the_test_ca(hierarchy: TestHierarchy, ca_dir: Path) -> None:
    assert hierarchy.issuer_p12 == ca_dir / "issuer.p12"
    assert stat.S_IMODE((ca_dir / "issuer.p12").stat().st_mode) == 0o600
    assert (ca_dir / "root.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (ca_dir / "intermediate.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    key, cert, others = load_pkcs12(_p12(hierarchy), PASSWORD, "issuer.p12")
    assert cert == hierarchy.intermediate_cert
    assert others == [hierarchy.root_cert]
    assert key_matches_certificate(key, cert)
    assert not key_matches_certificate(key, hierarchy.root_cert)


def test_p12_written_by_openssl(
    good_leaf: x509.Certificate,
    leaf_key: rsa.RSAPrivateKey,
    hierarchy: TestHierarchy,
    openssl: OpenSSL,
    work: Workdir,
) -> None:
    target = work.path / "leaf.p12"
    openssl(
        "pkcs12",
        "-export",
        "-in",
        work.pem("leaf.pem", good_leaf),
        "-inkey",
        work.key("leaf.key", leaf_key),
        "-passin",
        work.passin,
        "-certfile",
        work.pem("inter.pem", hierarchy.intermediate_cert),
        "-passout",
        "pass:s3cret",
        "-out",
        target,
    )
    key, cert, others = load_pkcs12(target.read_bytes(), b"s3cret", str(target))
    assert cert == good_leaf
    assert others == [hierarchy.intermediate_cert]
    assert key_matches_certificate(key, good_leaf)


def test_wrong_password(hierarchy: TestHierarchy) -> None:
    with pytest.raises(CertificateError) as caught:
        load_pkcs12(_p12(hierarchy), b"guess", "ca.issuer_p12")
    assert str(caught.value) == "ca.issuer_p12: wrong password or damaged PKCS#12 file"
    with pytest.raises(CertificateError, match="wrong password or damaged"):
        load_pkcs12(_p12(hierarchy), None, "ca.issuer_p12")


def test_damaged_file(hierarchy: TestHierarchy) -> None:
    data = _p12(hierarchy)
    with pytest.raises(CertificateError, match="^x.p12: wrong password or damaged PKCS#12"):
        load_pkcs12(data[: len(data) // 2], PASSWORD, "x.p12")


def test_no_key(hierarchy: TestHierarchy) -> None:
    data = pkcs12.serialize_key_and_certificates(
        b"c", None, None, [hierarchy.root_cert], ENCRYPTION
    )
    with pytest.raises(CertificateError) as caught:
        load_pkcs12(data, b"pw", "certs.p12")
    assert str(caught.value) == "certs.p12: the PKCS#12 file has no private key"


def test_no_certificate() -> None:
    key = rsa.generate_private_key(65537, 2048)
    data = pkcs12.serialize_key_and_certificates(b"k", key, None, None, ENCRYPTION)
    with pytest.raises(CertificateError) as caught:
        load_pkcs12(data, b"pw", "key.p12")
    assert str(caught.value) == "key.p12: the PKCS#12 file has no certificate"


def test_writing_needs_a_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a password is needed"):
        make_test_hierarchy(tmp_path)
    assert not (tmp_path / "issuer.p12").exists()
