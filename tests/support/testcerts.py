"""Hand-made leaf certificates that break one Google rule each, for tests of rejection paths.

``build_leaf`` makes a leaf with cryptography from a :class:`LeafSpec` (change one field to
break one rule); ``forge`` re-signs a certificate after editing its DER for what cryptography
refuses to produce (non-positive or 21-byte serials, SHA-1 signatures).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from syncd.pki import der
from tests.support.testca import CAKey

# sha1WithRSAEncryption AlgorithmIdentifier, the same length as the SHA-256 one it replaces.
SHA1_RSA_ALGORITHM = bytes.fromhex("300d06092a864886f70d0101050500")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LeafSpec:
    """A leaf to Google's profile unless a field says otherwise."""

    __test__ = False

    email: str
    public_key: CertificatePublicKeyTypes
    san: list[x509.GeneralName] | None = None
    eku: list[x509.ObjectIdentifier] | None = None
    ca: bool = False
    key_cert_sign: bool = False
    not_before: dt.datetime = field(default_factory=lambda: _now() - dt.timedelta(minutes=5))
    not_after: dt.datetime = field(default_factory=lambda: _now() + dt.timedelta(days=30))
    issuer_name: x509.Name | None = None


def build_leaf(spec: LeafSpec, issuer: x509.Certificate, issuer_key: CAKey) -> x509.Certificate:
    """The leaf of ``spec``, signed (SHA-256) by ``issuer_key`` in the name of ``issuer``.

    ``san=[]`` or ``eku=[]`` leave the extension out; None means the profile's value.
    """
    san = spec.san if spec.san is not None else [x509.RFC822Name(spec.email)]
    eku = spec.eku if spec.eku is not None else [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=True, key_encipherment=True,
        data_encipherment=False, key_agreement=False, key_cert_sign=spec.key_cert_sign,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.email)]))
        .issuer_name(spec.issuer_name or issuer.subject)
        .public_key(spec.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(usage, critical=True)
        .add_extension(x509.BasicConstraints(ca=spec.ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(spec.public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def forge(
    draft: x509.Certificate,
    issuer_key: CAKey,
    *,
    serial_content: bytes | None = None,
    sha1: bool = False,
) -> x509.Certificate:
    """``draft`` re-signed by an RSA ``issuer_key`` with raw serial bytes and/or SHA-1."""
    if not isinstance(issuer_key, rsa.RSAPrivateKey):
        raise TypeError("forge signs with RSA issuer keys only")
    tbs_items = der.sequence_items(draft.tbs_certificate_bytes)
    _, algorithm, _ = der.sequence_items(draft.public_bytes(serialization.Encoding.DER))
    digest: hashes.HashAlgorithm = hashes.SHA256()
    if serial_content is not None:
        tbs_items[1] = der.encode(der.INTEGER, serial_content)
    if sha1:
        tbs_items[2] = algorithm = SHA1_RSA_ALGORITHM
        digest = hashes.SHA1()
    tbs = der.encode(der.SEQUENCE, b"".join(tbs_items))
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), digest)
    return x509.load_der_x509_certificate(der.certificate(tbs, algorithm, signature))
