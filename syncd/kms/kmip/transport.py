"""The KMIP operations syncd needs, as one interface both transports implement.

A transport turns each call into one KMIP request (or a few, for Locate) and each KMIP failure
into a syncd error: :class:`~syncd.errors.KMSUnavailableError` when the KMS could not be
reached or the session dropped (worth retrying), :class:`~syncd.errors.KMSRefusedError` when
it answered and refused (TLS, authentication, permission, not found, not active, not
supported); each message names the KMS (``describe()``), the operation and the object.
:class:`NotSupportedByServer` marks an optional operation the server does not offer (KMIP
Sign, server-side wrapping with AES-GCM, Certify), so the key manager can choose another way.

Key material crosses this interface only as what KMIP returns: public keys, and private keys
either wrapped by the KMS or, for client-side wrapping, over the mutually authenticated channel
to be wrapped in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from syncd.errors import KMSRefusedError
from syncd.kms.base import HashName, PrivateKeyFormat


class NotSupportedByServer(KMSRefusedError):
    """The KMS does not offer this operation, or not with these parameters."""


@dataclass(frozen=True)
class KmipPair:
    """A key pair in the KMS: KMIP keeps its two halves as two objects with ids of their own."""

    private_key_id: str
    public_key_id: str
    state: str = "active"
    """KMIP state, lower case: active, pre-active, deactivated, compromised, destroyed..."""


@dataclass(frozen=True)
class CertifyRequest:
    """What KMIP Certify needs to make a leaf certificate inside the KMS (Cosmian's way)."""

    public_key_id: str
    issuer_private_key_id: str
    issuer_certificate_id: str | None
    subject: str
    """RFC 4514 subject of the new certificate."""
    extensions_conf: str
    """An OpenSSL-style extensions file whose ``[v3_ca]`` section gives the leaf's extensions."""
    validity_days: int
    label: str


class KmipTransport(Protocol):
    """One connection (or connection pool) to one KMS. Thread-safe: the pipeline's workers
    share it."""

    def describe(self) -> str:
        """The KMS as messages name it: ``KMIP server kms.example.com:5696`` or a URL."""
        ...

    def create_key_pair(self, label: str, bits: int) -> KmipPair:
        """CreateKeyPair (RSA, sign/verify and decrypt/encrypt usage), both halves named
        ``label``, the private key activated so it can sign."""
        ...

    def register_private_key(self, label: str, pkcs8_der: bytes, public_der: bytes) -> KmipPair:
        """Register an existing key pair (an issuer's) under ``label``, activated."""
        ...

    def public_key_der(self, key_id: str) -> bytes:
        """Get: the SubjectPublicKeyInfo DER of a public key (or of a private key's pair)."""
        ...

    def private_key_der(self, key_id: str, key_format: PrivateKeyFormat) -> bytes:
        """Get: the private key DER as PKCS#1 or PKCS#8, for wrapping in memory at once."""
        ...

    def wrapped_private_key(
        self, key_id: str, key_format: PrivateKeyFormat, wrapping_key_id: str
    ) -> bytes:
        """Get with a key wrapping specification: the private key as ``key_format`` DER
        encrypted by the KMS with the AES key ``wrapping_key_id`` in AES-GCM, as
        ``nonce || ciphertext || tag``. NotSupportedByServer when the KMS cannot."""
        ...

    def sign(self, key_id: str, data: bytes, hash_name: HashName) -> bytes:
        """Sign: RSA PKCS#1 v1.5 over ``data`` with the active private key.
        NotSupportedByServer when the KMS has no Sign."""
        ...

    def certify(self, request: CertifyRequest) -> bytes:
        """Certify, then Get of the new certificate: its DER. NotSupportedByServer when the
        KMS has no Certify (PyKMIP)."""
        ...

    def locate(self, label: str) -> list[KmipPair]:
        """Every key pair named ``label`` that is not destroyed, oldest first."""
        ...

    def revoke(self, key_id: str, reason: str) -> None:
        """Revoke (reason: cessation of operation) the private key and its public key.
        Idempotent: revoking a revoked key is not an error."""
        ...

    def destroy(self, key_id: str) -> None:
        """Destroy both halves (after revoke). Idempotent."""
        ...

    def close(self) -> None: ...
