"""PKCS#7 chains in and out, checked against the openssl binary; ordering and fingerprints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncd.errors import CertificateError
from syncd.pki.chain import (
    fingerprint,
    leaf_first,
    load_pem_chain,
    order_chain,
    parse_pkcs7,
    pkcs7_pem,
)
from tests.support.testca import TestHierarchy, make_test_hierarchy

if TYPE_CHECKING:
    from conftest import OpenSSL, Workdir


def test_pkcs7_round_trip_read_by_openssl(
    good_leaf: x509.Certificate, hierarchy: TestHierarchy, openssl: OpenSSL, work: Workdir
) -> None:
    text = pkcs7_pem([good_leaf, hierarchy.intermediate_cert])
    assert text.startswith("-----BEGIN PKCS7-----\n")
    assert text.rstrip().endswith("-----END PKCS7-----")
    assert parse_pkcs7(text) == [good_leaf, hierarchy.intermediate_cert]
    assert parse_pkcs7(text.encode()) == [good_leaf, hierarchy.intermediate_cert]

    p7 = work.path / "chain.p7b"
    p7.write_text(text)
    printed = openssl("pkcs7", "-in", p7, "-print_certs").stdout
    # a PKCS#7 SET is in DER order, not chain order, whatever order it was given
    assert set(load_pem_chain(printed)) == {good_leaf, hierarchy.intermediate_cert}


def test_parse_der_pkcs7_converted_by_openssl(
    good_leaf: x509.Certificate, hierarchy: TestHierarchy, openssl: OpenSSL, work: Workdir
) -> None:
    pem_file = work.path / "chain.p7b"
    pem_file.write_text(pkcs7_pem([hierarchy.intermediate_cert, good_leaf]))
    der_file = work.path / "chain.der"
    openssl("pkcs7", "-in", pem_file, "-outform", "DER", "-out", der_file)
    assert parse_pkcs7(der_file.read_bytes()) == [good_leaf, hierarchy.intermediate_cert]


# openssl crl2pkcs7 keeps the file order in the SET (BER, not DER); cryptography warns.
@pytest.mark.filterwarnings("ignore:PKCS#7 certificates could not be parsed as DER")
def test_parse_pkcs7_made_by_openssl_in_any_order(
    good_leaf: x509.Certificate, hierarchy: TestHierarchy, openssl: OpenSSL, work: Workdir
) -> None:
    bundle = work.pem("bundle.pem", hierarchy.root_cert, good_leaf, hierarchy.intermediate_cert)
    for form in ("DER", "PEM"):
        out = work.path / f"chain.{form}"
        openssl("crl2pkcs7", "-nocrl", "-certfile", bundle, "-outform", form, "-out", out)
        assert parse_pkcs7(out.read_bytes()) == [
            good_leaf,
            hierarchy.intermediate_cert,
            hierarchy.root_cert,
        ]


def test_leaf_first_keeps_order_when_ambiguous(
    good_leaf: x509.Certificate, hierarchy: TestHierarchy
) -> None:
    other = make_test_hierarchy(None, organization="Elsewhere")
    certs = [hierarchy.intermediate_cert, good_leaf, other.root_cert]
    assert leaf_first(certs) == certs
    assert leaf_first([hierarchy.intermediate_cert, good_leaf, hierarchy.root_cert]) == [
        good_leaf,
        hierarchy.intermediate_cert,
        hierarchy.root_cert,
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x30\x03\x02\x01\x01", "not a readable DER PKCS#7"),
        (
            "-----BEGIN PKCS7-----\nbm90IGEgY2hhaW4=\n-----END PKCS7-----\n",
            "not a readable PEM PKCS#7",
        ),
        (b"", "not a readable DER PKCS#7"),
    ],
)
def test_unreadable_pkcs7(data: bytes | str, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        parse_pkcs7(data)


def test_pem_certificates_are_not_pkcs7(good_leaf: x509.Certificate) -> None:
    with pytest.raises(CertificateError, match=r"expected a PKCS#7 chain \(BEGIN PKCS7\)"):
        parse_pkcs7(good_leaf.public_bytes(serialization.Encoding.PEM))


def test_empty_chain_cannot_be_written() -> None:
    with pytest.raises(CertificateError, match="no certificates"):
        pkcs7_pem([])


def test_bad_pem_bundle() -> None:
    with pytest.raises(CertificateError, match="not a readable PEM certificate bundle"):
        load_pem_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_fingerprint_matches_openssl(
    good_leaf: x509.Certificate, openssl: OpenSSL, work: Workdir
) -> None:
    out = openssl(
        "x509", "-in", work.pem("leaf.pem", good_leaf), "-noout", "-fingerprint", "-sha256"
    ).stdout
    expected = out.strip().split("=", 1)[1].replace(":", "").lower()
    assert fingerprint(good_leaf) == expected
    assert len(expected) == 64


def test_order_chain(good_leaf: x509.Certificate, hierarchy: TestHierarchy) -> None:
    other = make_test_hierarchy(None, organization="Elsewhere")
    shuffled = [
        other.intermediate_cert,
        hierarchy.root_cert,
        good_leaf,
        other.root_cert,
        hierarchy.intermediate_cert,
    ]
    assert order_chain(good_leaf, shuffled) == [
        good_leaf,
        hierarchy.intermediate_cert,
        hierarchy.root_cert,
    ]
    assert order_chain(good_leaf, [hierarchy.root_cert]) == [good_leaf]
    assert order_chain(hierarchy.root_cert, shuffled) == [hierarchy.root_cert]
