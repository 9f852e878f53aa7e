"""Reading an uploaded PKCS#7 chain the way Gmail does: the leaf, its addresses, its chain,
and the verdict of the sandbox's own S/MIME rules (smime.py; nothing from syncd.pki).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from syncd.sandbox.errors import invalid
from syncd.sandbox.smime import build_path, chain_problems, find_leaf


@dataclass(frozen=True)
class UploadedChain:
    leaf: x509.Certificate
    intermediates: list[x509.Certificate]
    """Every other certificate of the upload, leaf's issuer first where it can be ordered."""
    emails: list[str]
    fingerprint: str

    @property
    def pem(self) -> str:
        """The leaf and the rest of the chain as PEM certificates (Gmail's ``pem`` field)."""
        blocks = [c.public_bytes(serialization.Encoding.PEM).decode() for c in self.certs]
        return "".join(blocks)

    @property
    def certs(self) -> list[x509.Certificate]:
        return [self.leaf, *self.intermediates]


def email_addresses(cert: x509.Certificate) -> list[str]:
    """The rfc822Name entries of the subjectAltName extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return []
    return [str(name) for name in san.get_values_for_type(x509.RFC822Name)]


def _certificates(pkcs7_text: str) -> list[x509.Certificate]:
    raw = pkcs7_text.encode("ascii", "replace")
    if b"-----BEGIN" not in raw:
        raise invalid("Invalid pkcs7: expected a PKCS#7 chain in PEM armour (BEGIN PKCS7).")
    if b"BEGIN CERTIFICATE" in raw and b"PKCS7" not in raw:
        raise invalid("Invalid pkcs7: got PEM certificates, not a PKCS#7 chain (BEGIN PKCS7).")
    try:
        certs = pkcs7.load_pem_pkcs7_certificates(raw)
    except ValueError as exc:
        raise invalid(f"Invalid pkcs7: not a readable PKCS#7 certificate chain ({exc}).") from None
    if not certs:
        raise invalid("Invalid pkcs7: the chain holds no certificates.")
    return list(certs)


def read_chain(pkcs7_text: str) -> UploadedChain:
    """Parse the upload; 400 INVALID_ARGUMENT when it is not a readable PKCS#7 chain."""
    certs = _certificates(pkcs7_text)
    leaf = find_leaf(certs)
    path, _ = build_path(leaf, certs, ())
    rest = path[1:] + [c for c in certs if c is not leaf and c not in path]
    digest = leaf.fingerprint(hashes.SHA256()).hex()
    return UploadedChain(leaf, rest, email_addresses(leaf), digest)


def profile_violations(
    chain: UploadedChain, email: str, roots: list[x509.Certificate], now: datetime
) -> list[str]:
    """Every rule of Google's S/MIME profile and chain validation the upload breaks."""
    return chain_problems(chain.certs, email, roots, now)
