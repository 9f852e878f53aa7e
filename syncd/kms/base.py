"""The KeyManager interface every KMS backend implements (local, kmip, later cosmian).

A backend owns key material: it creates key pairs, signs with stored keys (certificates are
signed by the issuer key inside the KMS, over the to-be-signed bytes), produces the
KACLS-wrapped private key Gmail stores as kaclsData, and finds, revokes and destroys keys.
Private keys never leave a backend in clear except inside that wrapped blob.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)

if TYPE_CHECKING:
    from syncd.pki.profile import LeafProfile

HashName = Literal["sha256", "sha384", "sha512"]
PrivateKeyFormat = Literal["pkcs1", "pkcs8"]
"""What kaclsData holds once unwrapped (``kacls.private_key_format``)."""


@dataclass(frozen=True)
class KeyRef:
    """Where a key pair lives in the KMS. Backends with one object per pair repeat the id."""

    label: str
    private_key_id: str
    public_key_id: str
    state: str = "active"


@dataclass(frozen=True)
class LeafRequest:
    """A user's leaf certificate, as a KMS that certifies itself (KMIP Certify) is asked for it."""

    email: str
    public_key: CertificateIssuerPublicKeyTypes
    public_key_id: str
    label: str
    issuer_certificate: x509.Certificate
    issuer_private_key_id: str
    profile: LeafProfile
    now: datetime
    aliases: tuple[str, ...] = ()
    """The user's other addresses, after ``email`` in the subjectAltName."""


class KeyManager(abc.ABC):
    """Key operations syncd needs from a KMS."""

    name: str

    @abc.abstractmethod
    def create_key_pair(self, label: str, bits: int) -> KeyRef:
        """Create an RSA key pair of ``bits`` (2048, 3072 or 4096) tagged with ``label``."""

    def generate_ahead(self, label: str, bits: int) -> None:
        """A ``create_key_pair(label, bits)`` is likely soon: a KMS that makes its keys in this
        process may start on it now, storing nothing (syncd.kms.ahead). A KMS server makes
        keys when asked: nothing to do."""
        return None

    def discard_ahead(self, label: str, bits: int) -> None:
        """The ``generate_ahead(label, bits)`` will not be taken: drop its key."""
        return None

    @abc.abstractmethod
    def import_private_key(self, label: str, key: CertificateIssuerPrivateKeyTypes) -> KeyRef:
        """Store an existing private key (an issuing CA's, or a leaf from PKCS#12)."""

    @abc.abstractmethod
    def public_key(self, key_id: str) -> CertificateIssuerPublicKeyTypes:
        """The public key of a stored key pair (by private or public key id)."""

    @abc.abstractmethod
    def sign(self, private_key_id: str, data: bytes, hash_name: HashName) -> bytes:
        """Sign ``data`` (RSA PKCS#1 v1.5, or ECDSA DER) with an active stored key."""

    @abc.abstractmethod
    def wrapped_private_key(self, private_key_id: str, key_format: PrivateKeyFormat) -> str:
        """kaclsData: the private key, as PKCS#1 or PKCS#8 DER, wrapped for the KACLS (see
        syncd.kms.kacls)."""

    @abc.abstractmethod
    def locate(self, label: str) -> list[KeyRef]:
        """Every key pair tagged ``label`` that is not destroyed, oldest first."""

    @abc.abstractmethod
    def revoke(self, private_key_id: str, reason: str) -> None:
        """Mark the key pair revoked: it can no longer sign or be wrapped. Idempotent."""

    @abc.abstractmethod
    def destroy(self, private_key_id: str) -> None:
        """Erase the private key material (only after revoke). Idempotent."""

    def certify_in_kms(self, request: LeafRequest) -> x509.Certificate | None:
        """The leaf made and signed inside the KMS (KMIP Certify), or None when syncd builds
        the certificate and the KMS signs its to-be-signed bytes (:meth:`sign`): the usual way,
        and the only one of backends without Certify."""
        return None
