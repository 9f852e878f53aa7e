"""A user's credential: key pair in the KMS, certificate from the issuing CA, PKCS#7 chain and
the KACLS-wrapped private key, the four things Gmail's keypairs.create takes.

The pipeline runs these as separate checkpointed steps; ``syncd cert issue`` and ``syncd google
key-pairs create`` run them in one go through :func:`make_credential`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from syncd.credentials.issuers import IssuingCA
from syncd.kms.base import KeyManager, KeyRef, LeafRequest, PrivateKeyFormat
from syncd.kms.kmip.transport import NotSupportedByServer
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
    aliases: Sequence[str] = (),
) -> tuple[x509.Certificate, str]:
    """Issue and validate the leaf for ``key`` (held by ``kms``); returns it and its PKCS#7
    chain. The issuer signs in ``issuer_kms``, the backend holding its key (default ``kms``).
    ``aliases``, the user's other addresses, follow ``email`` in the subjectAltName."""
    certificate = certify_leaf(
        email, key, kms, issuer, profile, now, issuer_kms=issuer_kms, aliases=aliases
    )
    return certificate, pkcs7_pem([certificate, *issuer.intermediates])


def certify_leaf(
    email: str,
    key: KeyRef,
    kms: KeyManager,
    issuer: IssuingCA,
    profile: LeafProfile,
    now: datetime,
    *,
    issuer_kms: KeyManager | None = None,
    aliases: Sequence[str] = (),
) -> x509.Certificate:
    """:func:`certify` without the PKCS#7 chain (the pipeline records the certificate alone
    and builds the chain when it uploads)."""
    signing_kms = issuer_kms or kms
    public_key = kms.public_key(key.public_key_id)
    leaf = _Leaf(email, tuple(aliases), key, public_key)
    try:
        certificate = _made_in_kms(leaf, signing_kms, kms, issuer, profile, now)
        if certificate is None:
            certificate = issue_leaf(
                email,
                public_key,
                issuer.certificate,
                issuer.signer(signing_kms, profile.hash),
                profile,
                now,
                aliases=leaf.aliases,
            )
    except NotSupportedByServer:
        # kms.kmip.signing auto: the KMS refused Sign, so it makes the certificate (Certify)
        certificate = _made_in_kms(leaf, signing_kms, kms, issuer, profile, now)
        if certificate is None:
            raise
    roots = [issuer.root] if issuer.root is not None else []
    # A KMS that certified starts the validity by its own clock, possibly a moment after
    # ``now`` (certify_leaf has allowed it a few minutes ahead): judge from that moment.
    checked_at = max(now, certificate.not_valid_before_utc)
    check_for_upload(certificate, issuer.intermediates, email, roots, checked_at)
    return certificate


@dataclass(frozen=True)
class _Leaf:
    """The leaf asked for: whose, and for which key."""

    email: str
    aliases: tuple[str, ...]
    key: KeyRef
    public_key: CertificateIssuerPublicKeyTypes


def _made_in_kms(
    leaf: _Leaf,
    signing_kms: KeyManager,
    key_kms: KeyManager,
    issuer: IssuingCA,
    profile: LeafProfile,
    now: datetime,
) -> x509.Certificate | None:
    """The leaf made by KMIP Certify, when the KMS holding the issuer key certifies (Cosmian
    releases without Sign); None when syncd builds the certificate and the KMS signs it. Certify
    needs the user's key in the same KMS as the issuer's."""
    if signing_kms is not key_kms:
        return None
    request = LeafRequest(
        email=leaf.email,
        public_key=leaf.public_key,
        public_key_id=leaf.key.public_key_id,
        label=leaf.key.label,
        issuer_certificate=issuer.certificate,
        issuer_private_key_id=issuer.kms_private_key_id,
        profile=profile,
        now=now,
        aliases=leaf.aliases,
    )
    return signing_kms.certify_in_kms(request)


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
