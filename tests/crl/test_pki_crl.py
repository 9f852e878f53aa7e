"""syncd.pki.crl judged by openssl: the CRL parses, its signature verifies against the issuer,
and ``openssl verify -crl_check`` refuses a revoked leaf while it accepts another one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from syncd.cli.crl import REASON_CHOICES
from syncd.errors import CertificateError
from syncd.pki.crl import (
    REASONS,
    USER_REASONS,
    RevokedSerial,
    build_crl,
    crl_number,
    encode_crl,
    load_crl,
    reason_flag,
    serial_from_hex,
)
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from tests.crl.conftest import OpenSSL, openssl_hex
from tests.support.testca import TestHierarchy, make_test_hierarchy, new_key, sign_with

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
WEEK = dt.timedelta(days=7)
PROFILE = LeafProfile(crl_distribution_points=("http://crl.example.test/issuing.crl",))


@pytest.fixture(scope="module")
def hierarchy() -> TestHierarchy:
    return make_test_hierarchy(None)


@pytest.fixture(scope="module")
def leaves(hierarchy: TestHierarchy) -> dict[str, x509.Certificate]:
    return {
        email: issue_leaf(email, new_key("rsa").public_key(), hierarchy.intermediate_cert,
                          hierarchy.signer(), PROFILE, NOW)
        for email in ("gone@example.com", "kept@example.com")
    }


def _pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def test_openssl_reads_verifies_and_applies_the_crl(
    hierarchy: TestHierarchy, leaves: dict[str, x509.Certificate], tmp_path: Path,
    openssl: OpenSSL,
) -> None:
    gone, kept = leaves["gone@example.com"], leaves["kept@example.com"]
    revoked = [
        RevokedSerial(gone.serial_number, NOW - dt.timedelta(hours=1), "cessationOfOperation"),
        RevokedSerial(12345, NOW - dt.timedelta(days=2), "keyCompromise"),
        RevokedSerial(777, NOW - dt.timedelta(days=3), "unspecified"),
    ]
    crl = build_crl(hierarchy.intermediate_cert, hierarchy.signer(), revoked,
                    number=42, now=NOW, validity=WEEK)
    der_file = tmp_path / "issuing.crl"
    der_file.write_bytes(encode_crl(crl, "der"))
    chain = _pem(tmp_path / "chain.pem", hierarchy.intermediate_cert, hierarchy.root_cert)

    text = openssl("crl", "-inform", "DER", "-in", der_file, "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert f"Serial Number: {openssl_hex(gone.serial_number)}\n" in text.stdout
    assert "Cessation Of Operation" in text.stdout
    assert "Key Compromise" in text.stdout
    assert "X509v3 CRL Number: \n                42" in text.stdout
    assert "X509v3 Authority Key Identifier" in text.stdout
    assert text.stdout.count("Serial Number:") == 3
    # The entry revoked as unspecified carries no reason code (RFC 5280 5.3.1).
    assert text.stdout.count("X509v3 CRL Reason Code") == 2

    signature = openssl("crl", "-inform", "DER", "-in", der_file, "-noout", "-CAfile", chain)
    assert signature.returncode == 0 and "verify OK" in signature.stderr + signature.stdout

    pem_file = tmp_path / "issuing.pem"
    pem_file.write_bytes(encode_crl(crl, "pem"))
    refused = openssl("verify", "-crl_check", "-CAfile", chain, "-CRLfile", pem_file,
                      _pem(tmp_path / "gone.pem", gone))
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr
    accepted = openssl("verify", "-crl_check", "-CAfile", chain, "-CRLfile", pem_file,
                       _pem(tmp_path / "kept.pem", kept))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert load_crl(pem_file.read_bytes()) == load_crl(der_file.read_bytes())


def test_contents_seen_by_cryptography(hierarchy: TestHierarchy) -> None:
    crl = build_crl(
        hierarchy.intermediate_cert,
        hierarchy.signer("sha384"),
        [RevokedSerial(5, NOW, "superseded"), RevokedSerial(5, NOW, "keyCompromise"),
         RevokedSerial(3, NOW, "affiliationChanged")],
        number=7, now=NOW, validity=WEEK, hash_name="sha384",
    )
    assert crl_number(crl) == 7
    assert crl.issuer == hierarchy.intermediate_cert.subject
    assert crl.next_update_utc == NOW + WEEK
    assert crl.last_update_utc is not None and crl.last_update_utc < NOW
    assert crl.signature_hash_algorithm is not None
    assert crl.signature_hash_algorithm.name == "sha384"
    entries = {entry.serial_number: entry for entry in crl}
    assert sorted(entries) == [3, 5]  # the duplicate serial listed once, first reason kept
    reason = entries[5].extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.superseded


def test_ec_issuer(openssl: OpenSSL, tmp_path: Path) -> None:
    ec = make_test_hierarchy(None, key_type="ec")
    crl = build_crl(ec.intermediate_cert, ec.signer(), [RevokedSerial(99, NOW)],
                    number=1, now=NOW, validity=WEEK)
    path = tmp_path / "ec.crl"
    path.write_bytes(encode_crl(crl, "der"))
    chain = _pem(tmp_path / "chain.pem", ec.intermediate_cert, ec.root_cert)
    checked = openssl("crl", "-inform", "DER", "-in", path, "-noout", "-CAfile", chain)
    assert checked.returncode == 0 and "verify OK" in checked.stderr + checked.stdout


def test_a_signature_from_another_key_is_refused(hierarchy: TestHierarchy) -> None:
    other = make_test_hierarchy(None)
    with pytest.raises(CertificateError, match="does not verify against"):
        build_crl(hierarchy.intermediate_cert, other.signer(), [], number=1, now=NOW,
                  validity=WEEK)


def test_an_issuer_without_crl_sign_is_refused() -> None:
    key = new_key("rsa")
    name = x509.Name.from_rfc4514_string("CN=No CRL Sign CA")
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=False, encipher_only=False,
                          decipher_only=False)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(1)
          .not_valid_before(NOW - WEEK).not_valid_after(NOW + WEEK)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage, critical=True)
          .sign(key, hashes.SHA256()))
    with pytest.raises(CertificateError, match=r"may not sign CRLs \(its keyUsage has no "):
        build_crl(ca, sign_with(key, "sha256"), [], number=1, now=NOW, validity=WEEK)


def test_refusals() -> None:
    assert REASON_CHOICES == USER_REASONS  # the help of syncd revoke names what it takes
    assert set(USER_REASONS) <= set(REASONS)
    with pytest.raises(CertificateError, match="unknown revocation reason 'stolen'; use one"):
        reason_flag("stolen")
    with pytest.raises(CertificateError, match="not hexadecimal"):
        serial_from_hex("xyz")
    assert serial_from_hex("ff") == 255
    with pytest.raises(CertificateError, match="not a readable CRL"):
        load_crl(b"not a crl")
    with pytest.raises(CertificateError, match="must be der or pem"):
        encode_crl(None, "txt")  # type: ignore[arg-type]
