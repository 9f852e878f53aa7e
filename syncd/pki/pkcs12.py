"""Reading PKCS#12 files: an issuing CA to import, or an externally issued user credential."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from syncd.errors import CertificateError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def load_pkcs12(
    data: bytes, password: bytes | None, where: str
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """(private key, its certificate, the other certificates) of a PKCS#12 file.

    ``where`` names the file or setting in error messages. The key must be RSA or EC and must
    match the certificate.
    """
    try:
        key, cert, others = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{where}: wrong password or damaged PKCS#12 file") from exc
    if key is None:
        raise CertificateError(f"{where}: the PKCS#12 file has no private key")
    if cert is None:
        raise CertificateError(f"{where}: the PKCS#12 file has no certificate")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{where}: the PKCS#12 key is {type(key).__name__}; "
                               "use an RSA or EC key")
    if not key_matches_certificate(key, cert):
        raise CertificateError(f"{where}: the private key does not match the certificate "
                               f"{cert.subject.rfc4514_string()}")
    return key, cert, list(others)


def key_matches_certificate(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """True when ``cert`` carries the public half of ``key``."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)
