"""The rotating verification: the identity exists and points at syncd's key pair, the key pair
is enabled, the KMS key is active; what differs is recorded as drift for the next plan.

One step, ``verify_credential``, reads only (two Gmail GETs and one KMS Locate) and records
on the active key pair when it was verified and the drift found (None: none). The next pass's
plan turns a drift into a repair (:func:`syncd.plan.drift.drifted`); the repair's
``insert_identity`` clears it. Only a drift is audited, so that a verification finding
everything in order leaves no trace beyond ``verified_at``.
"""

from __future__ import annotations

from syncd.domain import ReasonCode
from syncd.google.errors import GoogleAPIError
from syncd.pipeline.steps.base import (
    KeyPairView,
    Outcome,
    Services,
    Work,
    mailbox_unavailable,
    not_found,
    target_of,
)

Finding = tuple[ReasonCode, str]

SEVERITY = (
    ReasonCode.DRIFT_KMS_KEY_REVOKED,  # a replacement: the only finding a repair cannot heal
    ReasonCode.DRIFT_KEYPAIR_MISSING,
    ReasonCode.DRIFT_KEYPAIR_DISABLED,
    ReasonCode.DRIFT_IDENTITY_MISSING,
    ReasonCode.DRIFT_IDENTITY_REPOINTED,
)
"""When a verification finds several drifts, the first of these is the one recorded (the
detail names them all)."""


def _gmail_findings(work: Work, services: Services, target: KeyPairView) -> list[Finding]:
    found: list[Finding] = []
    ours = target.gmail_key_pair_id
    try:
        identity = services.gmail.get_identity(work.email)
    except GoogleAPIError as error:
        if not not_found(error):
            raise
        found.append((ReasonCode.DRIFT_IDENTITY_MISSING, "identity not found in Gmail"))
    else:
        points_at = identity.get("primaryKeyPairId")
        if ours and points_at != ours:
            found.append(
                (
                    ReasonCode.DRIFT_IDENTITY_REPOINTED,
                    f"identity points at key pair {points_at}, not syncd's {ours}",
                )
            )
    if not ours:
        found.append((ReasonCode.DRIFT_KEYPAIR_MISSING, "no Gmail key pair recorded"))
        return found
    try:
        keypair = services.gmail.get_keypair(work.email, ours)
    except GoogleAPIError as error:
        if not not_found(error):
            raise
        found.append((ReasonCode.DRIFT_KEYPAIR_MISSING, f"key pair {ours} not found in Gmail"))
    else:
        state = keypair.get("enablementState")
        if state != "enabled":
            found.append((ReasonCode.DRIFT_KEYPAIR_DISABLED, f"key pair {ours} is {state}"))
    return found


def _kms_findings(services: Services, target: KeyPairView) -> list[Finding]:
    """The KMS key must be there and active; an adopted key pair (no KMS key) is not looked
    at. Locate by the key pair's label is the one KeyManager call that reports a key's state."""
    key_id = target.kms_private_key_id
    if not key_id:
        return []
    kms = services.holding(target)
    states = {ref.private_key_id: ref.state for ref in kms.locate(target.kms_label)}
    state = states.get(key_id)
    if state is None:
        detail = f"KMS key {key_id} not found in {kms.name} under {target.kms_label} (destroyed?)"
        return [(ReasonCode.DRIFT_KMS_KEY_REVOKED, detail)]
    if state != "active":
        return [(ReasonCode.DRIFT_KMS_KEY_REVOKED, f"KMS key {key_id} in {kms.name} is {state}")]
    return []


def verify_credential(work: Work, services: Services) -> Outcome:
    """Check the active credential against Gmail and the KMS; record the drift found."""
    target = target_of(work)
    now = services.clock()
    try:
        found = _gmail_findings(work, services, target)
    except GoogleAPIError as error:
        if not mailbox_unavailable(error):
            raise
        # A suspended mailbox (or one without mail service) is not drift: nothing to repair.
        return Outcome().update(target.id, verified_at=now, drift=None, drift_detail=None)
    found += _kms_findings(services, target)
    if not found:
        return Outcome().update(target.id, verified_at=now, drift=None, drift_detail=None)
    found.sort(key=lambda finding: SEVERITY.index(finding[0]))
    code = found[0][0]
    detail = "; ".join(text for _, text in found)
    return Outcome(audit={"drift": code.value, "detail": detail}).update(
        target.id, verified_at=now, drift=code.value, drift_detail=detail
    )
