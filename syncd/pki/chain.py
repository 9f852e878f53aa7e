"""Certificate chains: PKCS#7 (PEM or DER) in and out, PEM bundles, ordering, fingerprints.

Gmail takes a key pair's certificates as a PKCS#7 chain in PEM armour; this module owns that
format and the ordering of a chain (leaf first, each certificate followed by its issuer).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from syncd.errors import CertificateError

_PEM_MARK = b"-----BEGIN"


def describe(cert: x509.Certificate) -> str:
    """A certificate's subject as an RFC 4514 string, for messages."""
    return cert.subject.rfc4514_string() or "(empty subject)"


def pkcs7_pem(certs: Sequence[x509.Certificate]) -> str:
    """The certificates as a degenerate PKCS#7 SignedData in PEM armour (BEGIN PKCS7)."""
    if not certs:
        raise CertificateError("cannot build a PKCS#7 chain from no certificates")
    return pkcs7.serialize_certificates(list(certs), serialization.Encoding.PEM).decode("ascii")


def parse_pkcs7(data: bytes | str) -> list[x509.Certificate]:
    """The certificates of a PKCS#7 chain given as PEM (BEGIN PKCS7) or DER, leaf first."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    is_pem = raw.lstrip().startswith(_PEM_MARK)
    if is_pem and b"-----BEGIN CERTIFICATE-----" in raw and b"PKCS7" not in raw:
        raise CertificateError(
            "expected a PKCS#7 chain (BEGIN PKCS7) but got PEM certificates (BEGIN CERTIFICATE)"
        )
    try:
        if is_pem:
            certs = pkcs7.load_pem_pkcs7_certificates(raw)
        else:
            certs = pkcs7.load_der_pkcs7_certificates(raw)
    except ValueError as exc:
        kind = "PEM" if is_pem else "DER"
        raise CertificateError(f"not a readable {kind} PKCS#7 certificate chain ({exc})") from exc
    if not certs:
        raise CertificateError("the PKCS#7 chain holds no certificates")
    return leaf_first(list(certs))


def leaf_first(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """``certs`` as leaf, issuer, issuer's issuer, ... then any others in their given order.

    PKCS#7 keeps certificates in a SET, whose DER order is by encoding, not by chain; the leaf
    is the one certificate that issued none of the others. With no single such certificate
    the given order is kept.
    """
    issuer_names = {c.issuer for c in certs if c.issuer != c.subject}
    ends = [c for c in certs if c.subject not in issuer_names]
    if len(ends) != 1:
        return list(certs)
    path = order_chain(ends[0], certs)
    return path + [c for c in certs if c not in path]


def load_pem_chain(data: bytes | str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (BEGIN CERTIFICATE blocks), in file order."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    try:
        return list(x509.load_pem_x509_certificates(raw))
    except ValueError as exc:
        raise CertificateError(f"not a readable PEM certificate bundle ({exc})") from exc


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, lowercase hex without separators."""
    return cert.fingerprint(hashes.SHA256()).hex()


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when the certificate's own key verifies its signature."""
    return cert.issuer == cert.subject and issued_by(cert, cert)


def issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when ``parent`` is named as ``child``'s issuer and its key verifies the signature."""
    return _verified_link(child, parent)


# Certificates hash and compare by their DER bytes, so a remembered answer is the answer. The
# same links (an issuer to its root, a leaf while a chain is ordered and then validated) are
# checked again and again, and each check is a signature verification.
@lru_cache(maxsize=512)
def _verified_link(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def find_issuer(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The first candidate that issued ``cert`` (name and signature), or None."""
    for candidate in candidates:
        if candidate is not cert and issued_by(cert, candidate):
            return candidate
    return None


def order_chain(
    leaf: x509.Certificate, others: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """``leaf`` followed by its issuer, that issuer's issuer, ... as found among ``others``.

    Certificates of ``others`` that are not on the leaf's path are left out; the walk stops at
    a self-signed certificate or when no issuer is found.
    """
    chain = [leaf]
    remaining = [c for c in others if c != leaf]
    current = leaf
    while not is_self_signed(current):
        parent = find_issuer(current, remaining)
        if parent is None:
            break
        chain.append(parent)
        remaining = [c for c in remaining if c != parent]
        current = parent
    return chain
