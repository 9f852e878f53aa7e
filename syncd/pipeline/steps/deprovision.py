"""The steps that end a credential: identity deleted, key pairs disabled, KMS keys revoked
(and the certificates listed in the CRL)."""

from __future__ import annotations

from syncd.domain import KeyPairStatus
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import keypair_fingerprint
from syncd.pipeline.steps.base import (
    UNAVAILABLE,
    Outcome,
    Services,
    Work,
    current_identity,
    mailbox_unavailable,
)
from syncd.pipeline.steps.rename import delete_identity_at
from syncd.pipeline.steps.revocation import revocation_of

CESSATION = "cessationOfOperation"


def delete_identity(work: Work, services: Services) -> Outcome:
    outcome = _delete_current_identity(work, services)
    earlier = delete_identity_at(work, services, work.previous_email)  # a renamed user's
    if earlier.audit is not None:
        outcome.audit = {**(outcome.audit or {}), **earlier.audit}
    return outcome


def _delete_current_identity(work: Work, services: Services) -> Outcome:
    try:
        if current_identity(work, services) is None:
            return Outcome()
        services.gmail.delete_identity(work.email)
    except GoogleAPIError as error:
        if mailbox_unavailable(error):
            return Outcome(audit=dict(UNAVAILABLE))
        raise
    return Outcome(audit={})


def disable_keypairs(work: Work, services: Services) -> Outcome:
    """Disable every Gmail key pair syncd made for the user (matched by certificate)."""
    ours = {kp.fingerprint_sha256: kp for kp in work.others if kp.fingerprint_sha256}
    if not ours:
        return Outcome()
    disabled = []
    outcome = Outcome()
    try:
        keypairs = services.gmail.list_keypairs(work.email)
    except GoogleAPIError as error:
        if mailbox_unavailable(error):
            return Outcome(audit=dict(UNAVAILABLE))
        raise
    for keypair in keypairs:
        mine = ours.get(keypair_fingerprint(keypair) or "")
        if mine is None:
            continue
        key_pair_id = str(keypair["keyPairId"])
        if keypair.get("enablementState") != "disabled":
            services.gmail.disable_keypair(work.email, key_pair_id)
            disabled.append(key_pair_id)
        outcome.update(mine.id, gmail_key_pair_id=key_pair_id)
    outcome.audit = {"disabled": disabled} if disabled else None
    return outcome


def revoke_keys(work: Work, services: Services) -> Outcome:
    outcome = Outcome()
    revoked = []
    for kp in work.others:
        if kp.status in (
            KeyPairStatus.DISABLED,
            KeyPairStatus.ABANDONED,
            KeyPairStatus.OBLITERATED,
        ):
            continue
        kms = services.holding(kp)
        ids = {kp.kms_private_key_id} if kp.kms_private_key_id else set()
        ids |= {ref.private_key_id for ref in kms.locate(kp.kms_label)}
        for key_id in sorted(ids):
            kms.revoke(key_id, f"deprovisioned: {work.email}")
            revoked.append(key_id)
        if kp.gmail_key_pair_id:  # disabled in Gmail by disable_keypairs
            outcome.update(kp.id, status=KeyPairStatus.DISABLED, disabled_at=services.clock())
        else:
            outcome.update(kp.id, status=KeyPairStatus.ABANDONED)
    outcome.audit = {"revoked": revoked}
    # Every certificate of the user goes into the CRL, those of key pairs disabled earlier too.
    listed = (revocation_of(kp, work.email, CESSATION, services) for kp in work.others)
    outcome.revocations = [item for item in listed if item is not None]
    return outcome
