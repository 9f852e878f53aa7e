"""The steps that make a credential (provision, renew, replace): a KMS key, a certificate,
the key pair in Gmail, the identity pointing at it."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from syncd.credentials.credential import certify_leaf
from syncd.domain import KeyPairStatus, TaskKind
from syncd.google.errors import GoogleAPIError
from syncd.kms.base import KeyRef
from syncd.pipeline.steps.adopt import pointed_key_pairs
from syncd.pipeline.steps.aliases import certificate_aliases
from syncd.pipeline.steps.base import (
    Outcome,
    Services,
    StepError,
    Work,
    current_identity,
    target_of,
)
from syncd.pipeline.steps.revocation import revocation_of
from syncd.pki.chain import fingerprint, pkcs7_pem
from syncd.pki.profile import check_certifiable


def create_key(work: Work, services: Services) -> Outcome:
    target = target_of(work)
    if target.kms_private_key_id or target.gmail_key_pair_id:
        return Outcome()  # made, or adopted by check_existing (a key pair with no KMS key)
    check_certifiable(work.email)  # permanent: no KMS key for a certificate that cannot be
    found = (
        []
        if work.fresh_key
        else [ref for ref in services.kms.locate(target.kms_label) if ref.state == "active"]
    )
    ref: KeyRef = (
        found[0] if found else services.kms.create_key_pair(target.kms_label, services.key_bits)
    )
    backend = services.kms.name
    detail = {
        "kms_key_id": ref.private_key_id,
        "kms_backend": backend,
        "bits": services.key_bits,
        "found": bool(found),
    }
    return Outcome(audit=detail).update(
        target.id,
        kms_private_key_id=ref.private_key_id,
        kms_public_key_id=ref.public_key_id,
        key_bits=services.key_bits,
        kms_backend=backend,
    )


def issue_certificate(work: Work, services: Services) -> Outcome:
    target = target_of(work)
    if target.certificate_pem:
        return Outcome()
    if not target.kms_private_key_id or not target.kms_public_key_id:
        raise StepError(f"{work.email}: no KMS key recorded before issue_certificate")
    ref = KeyRef(target.kms_label, target.kms_private_key_id, target.kms_public_key_id)
    certificate = certify_leaf(
        work.email,
        ref,
        services.holding(target),
        services.issuer,
        services.profile,
        services.clock(),
        issuer_kms=services.issuer_kms(),
        aliases=certificate_aliases(work, services),
    )
    serial = format(certificate.serial_number, "x")
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return Outcome(
        audit={"serial": serial, "not_after": certificate.not_valid_after_utc.isoformat()}
    ).update(
        target.id,
        certificate_pem=pem,
        fingerprint_sha256=fingerprint(certificate),
        serial_hex=serial,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        profile=_issued_with(work, services, certificate),
    )


def _issued_with(work: Work, services: Services, certificate: x509.Certificate) -> dict[str, Any]:
    """The certificate's profile record (compared with the configuration's by the plan to
    find configuration drift): the configured one, with the issuer that signed and the key
    size the KMS key really has."""
    aliases = work.aliases if services.desired.include_aliases else ()
    record = services.desired.record(aliases)
    record["issuer"] = services.issuer.label
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        record["key_bits"] = key.key_size
    return record


def _chain(certificate_pem: str, services: Services) -> str:
    leaf = x509.load_pem_x509_certificate(certificate_pem.encode())
    return pkcs7_pem([leaf, *services.issuer.intermediates])


def upload_keypair(work: Work, services: Services) -> Outcome:
    target = target_of(work)
    if target.gmail_key_pair_id:
        return Outcome()
    if not target.certificate_pem or not target.fingerprint_sha256 or not target.kms_private_key_id:
        raise StepError(f"{work.email}: no certificate recorded before upload_keypair")
    existing = (
        None
        if work.fresh_certificate
        else services.gmail.find_keypair(work.email, target.fingerprint_sha256)
    )
    # The format kaclsData is written in: this pass's when it writes it; when it finds the key
    # pair already in Gmail, what was recorded before (rows from before the column: pkcs8).
    key_format: str = services.private_key_format
    if existing is None:
        kacls_data = services.holding(target).wrapped_private_key(
            target.kms_private_key_id, services.private_key_format
        )
        created = services.gmail.create_keypair(
            work.email, _chain(target.certificate_pem, services), services.kacls_uri, kacls_data
        )
        key_pair_id = str(created["keyPairId"])
    else:
        key_pair_id = str(existing["keyPairId"])
        key_format = target.private_key_format or key_format
        if existing.get("enablementState") == "disabled":
            services.gmail.enable_keypair(work.email, key_pair_id)
    audit = {"key_pair_id": key_pair_id, "found": existing is not None, "key_format": key_format}
    return Outcome(audit=audit).update(
        target.id, gmail_key_pair_id=key_pair_id, private_key_format=key_format
    )


def insert_identity(work: Work, services: Services) -> Outcome:
    """Point the user's identity at the target key pair; earlier generations are superseded."""
    target = target_of(work)
    if not target.gmail_key_pair_id:
        raise StepError(f"{work.email}: no Gmail key pair recorded before insert_identity")
    if work.kind is TaskKind.PROVISION:
        previous = _create_identity(work, services, target.gmail_key_pair_id)
    else:
        previous = _point_identity(work, services, target.gmail_key_pair_id)
    audit: dict[str, object] | None = None
    if previous != target.gmail_key_pair_id:
        audit = {"key_pair_id": target.gmail_key_pair_id, "previous_key_pair_id": previous}
        if previous and previous not in {o.gmail_key_pair_id for o in work.others}:
            audit["replaced_existing"] = previous  # a key pair syncd did not make
    outcome = Outcome(audit=audit)
    outcome.update(target.id, status=KeyPairStatus.ACTIVE)
    if work.kind is TaskKind.REPAIR:  # identity and key pair whole again: any drift is healed
        outcome.update(target.id, drift=None, drift_detail=None, verified_at=services.clock())
    for other in work.others:
        if other.status is KeyPairStatus.ACTIVE:
            outcome.update(
                other.id, status=KeyPairStatus.SUPERSEDED, superseded_at=services.clock()
            )
            if work.kind is TaskKind.REPLACE:  # a replacement revokes what it replaces
                revoked = revocation_of(other, work.email, "superseded", services)
                outcome.revocations += [revoked] if revoked else []
    return outcome


def _create_identity(work: Work, services: Services, key_pair_id: str) -> str | None:
    """A first provisioning: most users have no identity yet, so create one straight away.

    Returns the key pair the identity pointed at before (None when there was none).
    """
    try:
        services.gmail.create_identity(work.email, key_pair_id)
    except GoogleAPIError as error:
        if error.status != 409:
            raise
        return _point_identity(work, services, key_pair_id)
    return None


def _point_identity(work: Work, services: Services, key_pair_id: str) -> str | None:
    """Make the identity point at ``key_pair_id``; returns what it pointed at before."""
    identity = current_identity(work, services)
    # One key pair, or (an identity made by hand) a signing and an encryption one.
    previous = ", ".join(dict.fromkeys(pointed_key_pairs(identity))) if identity else None
    if identity is None:
        services.gmail.create_identity(work.email, key_pair_id)
    elif previous != key_pair_id:
        services.gmail.patch_identity(work.email, key_pair_id)
    return str(previous) if previous else None
