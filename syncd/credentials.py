"""A user's credential: key pair in the KMS, certificate from the issuing CA, PKCS#7 chain and
the KACLS-wrapped private key, the four things Gmail's keypairs.create takes.

The pipeline runs these as separate checkpointed steps; ``syncd cert issue`` and ``syncd google
key-pairs create`` run them in one go through :func:`make_credential`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from syncd.issuers import IssuingCA
from syncd.kms.base import KeyManager, KeyRef, PrivateKeyFormat
from syncd.pki.chain import pkcs7_pem
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from syncd.pki.validate import check_for_upload


@dataclass(frozen=True)
class Credential:
    email: str
    key: KeyRef
    certificate: x509.Certificate
    pkcs7: str
    """PEM PKCS#7 of the leaf and the intermediates (no root), as Gmail wants it."""
    kacls_data: str | None = None


def certify(
    email: str,
    key: KeyRef,
    kms: KeyManager,
    issuer: IssuingCA,
    profile: LeafProfile,
    now: datetime,
    *,
    issuer_kms: KeyManager | None = None,
) -> tuple[x509.Certificate, str]:
    """Issue and validate the leaf for ``key`` (held by ``kms``); returns it and its PKCS#7
    chain. The issuer signs in ``issuer_kms``, the backend holding its key (default ``kms``)."""
    certificate = issue_leaf(
        email,
        kms.public_key(key.public_key_id),
        issuer.certificate,
        issuer.signer(issuer_kms or kms, profile.hash),
        profile,
        now,
    )
    roots = [issuer.root] if issuer.root is not None else []
    check_for_upload(certificate, issuer.intermediates, email, roots, now)
    return certificate, pkcs7_pem([certificate, *issuer.intermediates])


def make_credential(
    email: str,
    kms: KeyManager,
    issuer: IssuingCA,
    profile: LeafProfile,
    *,
    bits: int,
    label: str,
    now: datetime,
    wrap: PrivateKeyFormat | None,
    issuer_kms: KeyManager | None = None,
) -> Credential:
    """Create a key pair in ``kms``, certify it (the issuer signs in ``issuer_kms``, default
    ``kms``) and (with ``wrap``, the format kaclsData holds the key in) wrap the private key
    for the KACLS."""
    key = kms.create_key_pair(label, bits)
    try:
        certificate, chain = certify(
            email, key, kms, issuer, profile, now, issuer_kms=issuer_kms
        )
        kacls_data = kms.wrapped_private_key(key.private_key_id, wrap) if wrap else None
    except Exception:
        kms.revoke(key.private_key_id, "credential not completed")
        raise
    return Credential(email, key, certificate, chain, kacls_data)
