"""Reading an uploaded PKCS#7 chain the way Gmail does: the leaf, its addresses, its chain,
and Google's S/MIME profile and chain checks (delegated to syncd.pki.validate).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncd.errors import CertificateError
from syncd.pki.chain import fingerprint, issued_by, order_chain, parse_pkcs7
from syncd.pki.validate import chain_violations, leaf_violations
from syncd.sandbox.errors import invalid


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


def leaf_of(certs: list[x509.Certificate]) -> x509.Certificate:
    """The certificate of the set that issued none of the others (the first if ambiguous)."""
    leaves = [c for c in certs if not any(o is not c and issued_by(o, c) for o in certs)]
    return leaves[0] if leaves else certs[0]


def email_addresses(cert: x509.Certificate) -> list[str]:
    """The rfc822Name entries of the subjectAltName extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in san.get_values_for_type(x509.RFC822Name)]


def read_chain(pkcs7_text: str) -> UploadedChain:
    """Parse the upload; 400 INVALID_ARGUMENT when it is not a readable PKCS#7 chain."""
    try:
        certs = parse_pkcs7(pkcs7_text)
    except CertificateError as exc:
        raise invalid(f"Invalid pkcs7: {exc}") from None
    leaf = leaf_of(certs)
    ordered = order_chain(leaf, certs)
    rest = ordered[1:] + [c for c in certs if c is not leaf and c not in ordered]
    return UploadedChain(leaf, rest, email_addresses(leaf), fingerprint(leaf))


def profile_violations(
    chain: UploadedChain, email: str, roots: list[x509.Certificate], now: datetime
) -> list[str]:
    """Every rule of Google's S/MIME profile and chain validation the upload breaks."""
    return [
        *leaf_violations(chain.leaf, email, now),
        *chain_violations(chain.leaf, chain.intermediates, roots, now),
    ]
