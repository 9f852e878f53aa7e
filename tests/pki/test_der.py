"""The DER helper that assembles KMS-signed certificates."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncd.errors import CertificateError
from syncd.pki import der


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (0x7F, "7f"),
        (0x80, "8180"),
        (0xFF, "81ff"),
        (0x100, "820100"),
        (70000, "83011170"),
    ],
)
def test_encode_length(length: int, encoded: str) -> None:
    assert der.encode_length(length).hex() == encoded


def test_split_and_reassemble_a_real_certificate(good_leaf: x509.Certificate) -> None:
    data = good_leaf.public_bytes(serialization.Encoding.DER)
    tbs, algorithm, signature = der.sequence_items(data)
    assert tbs == good_leaf.tbs_certificate_bytes
    assert signature[0] == der.BIT_STRING
    assert der.certificate(tbs, algorithm, good_leaf.signature) == data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not a DER SEQUENCE"),
        (b"\x02\x01\x01", "not a DER SEQUENCE"),
        (b"\x30\x05\x02\x01", "runs past the end"),
        (b"\x30\x03\x02\x01\x01\x00", "trailing bytes"),
        (b"\x30\x80\x00\x00", "indefinite or truncated"),
        (b"\x30\x01\x02", "truncated DER element"),
    ],
)
def test_malformed_der(data: bytes, problem: str) -> None:
    with pytest.raises(CertificateError, match=problem):
        der.sequence_items(data)
