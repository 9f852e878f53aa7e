"""The provisioning steps: each idempotent, each returning what to record.

A step looks for the artifact it would create before creating it (a KMS key with the key
pair's label, a Gmail key pair with the same certificate, an identity already pointing at the
key pair), acts, and returns an :class:`Outcome`. The runner writes the outcome and advances
the task's checkpoint in one transaction, so a crash between the external call and the commit
is healed when the step runs again: it finds its artifact and records it.

Steps never touch the database themselves; they see the task through a :class:`Work` view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncd.credentials.credential import certify
from syncd.credentials.issuers import IssuingCA
from syncd.domain import KeyPairStatus, TaskKind
from syncd.errors import SyncdError
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import keypair_fingerprint
from syncd.kms.base import KeyManager, KeyRef, PrivateKeyFormat
from syncd.kms.keyring import Keyring
from syncd.pki.chain import fingerprint, pkcs7_pem
from syncd.pki.profile import LeafProfile, check_certifiable


class GmailKeyPairs(Protocol):
    """The part of syncd.google.gmail.GmailCSE the steps use."""

    def create_keypair(
        self, user: str, pkcs7: str, kacls_uri: str, kacls_data: str
    ) -> dict[str, Any]: ...
    def find_keypair(self, user: str, leaf_fingerprint: str) -> dict[str, Any] | None: ...
    def list_keypairs(self, user: str) -> list[dict[str, Any]]: ...
    def get_keypair(self, user: str, key_pair_id: str) -> dict[str, Any]: ...
    def enable_keypair(self, user: str, key_pair_id: str) -> dict[str, Any]: ...
    def disable_keypair(self, user: str, key_pair_id: str) -> dict[str, Any]: ...
    def create_identity(self, user: str, key_pair_id: str) -> dict[str, Any]: ...
    def get_identity(self, user: str) -> dict[str, Any]: ...
    def patch_identity(self, user: str, key_pair_id: str) -> dict[str, Any]: ...
    def delete_identity(self, user: str) -> None: ...


class StepError(SyncdError):
    """A step cannot go on for a reason that retrying will not fix."""


@dataclass(frozen=True)
class Services:
    """What the steps act on."""

    keys: Keyring
    """The configured KMS backend (new keys) and those holding older keys."""
    gmail: GmailKeyPairs
    issuer: IssuingCA
    profile: LeafProfile
    kacls_uri: str
    key_bits: int
    clock: Callable[[], datetime]
    private_key_format: PrivateKeyFormat = "pkcs1"
    """How kaclsData holds the private key (``kacls.private_key_format``)."""

    @property
    def kms(self) -> KeyManager:
        """The configured backend: every new key pair is made there."""
        return self.keys.configured

    def holding(self, view: KeyPairView) -> KeyManager:
        """The backend holding ``view``'s key: the one recorded with it, else the configured
        one (a key not recorded yet is made, and looked for, there)."""
        return self.keys.holding(view.kms_backend if view.kms_private_key_id else None)

    def issuer_kms(self) -> KeyManager:
        """The backend holding the issuing CA's key."""
        return self.keys.holding(self.issuer.kms_backend)


@dataclass(frozen=True)
class KeyPairView:
    id: int
    generation: int
    status: KeyPairStatus
    kms_label: str
    kms_private_key_id: str | None
    kms_public_key_id: str | None
    certificate_pem: str | None
    fingerprint_sha256: str | None
    gmail_key_pair_id: str | None
    private_key_format: str | None = None
    kms_backend: str = "local"
    """The backend holding the key (meaningful once kms_private_key_id is set)."""


@dataclass(frozen=True)
class Work:
    """A task as a step sees it: the user, the generation it works on, and the others."""

    task_id: int
    kind: TaskKind
    user_id: int
    email: str
    target: KeyPairView | None
    others: tuple[KeyPairView, ...]
    user_deprovisioned: bool = False
    """The user was deprovisioned before this task (its end clears that)."""
    fresh_certificate: bool = False
    """The target's certificate was issued by this process and no upload of it has been tried
    yet, so Gmail cannot have it: upload_keypair need not look for it first."""
    fresh_key: bool = False
    """The target generation was made by this pass's plan and no create_key of it has been
    tried yet, so no KMS can hold a key with its label: create_key need not look for one
    first (a Locate scans every object on some KMS servers, PyKMIP's among them)."""

    def after(self, outcome: Outcome) -> Work:
        """This work as it stands once ``outcome`` is recorded."""

        def updated(view: KeyPairView) -> KeyPairView:
            columns = outcome.key_pairs.get(view.id, {})
            return replace(view, **{k: v for k, v in columns.items() if k in _VIEW_FIELDS})

        target = updated(self.target) if self.target is not None else None
        issued = self.target is not None and "certificate_pem" in outcome.key_pairs.get(
            self.target.id, {}
        )
        return replace(
            self,
            target=target,
            others=tuple(updated(v) for v in self.others),
            fresh_certificate=issued,
            fresh_key=False,
        )


@dataclass
class Outcome:
    """What a step did, to be recorded with the checkpoint in one transaction."""

    key_pairs: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Column updates by key pair id."""
    audit: dict[str, Any] | None = None
    """Audit detail; None when the step found nothing to do."""

    def update(self, key_pair_id: int, **columns: Any) -> Outcome:
        self.key_pairs.setdefault(key_pair_id, {}).update(columns)
        return self


Step = Callable[[Work, Services], Outcome]
_VIEW_FIELDS = {f.name for f in fields(KeyPairView)}


def _target(work: Work) -> KeyPairView:
    if work.target is None:
        raise StepError(f"{work.kind} task {work.task_id} for {work.email} has no key pair")
    return work.target


def _not_found(error: GoogleAPIError) -> bool:
    return error.status == 404


def _mailbox_unavailable(error: GoogleAPIError) -> bool:
    """Gmail refuses every call for a suspended user or one without mail service."""
    return (
        error.status == 400
        and error.reason == "FAILED_PRECONDITION"
        and "mail service not enabled" in error.google_message.lower()
    )


_UNAVAILABLE = {
    "gmail": "mailbox unavailable (suspended, or no mail service): its CSE identity and key "
    "pairs are left in Gmail, where nobody can use them"
}


# --- provision / renew / replace ------------------------------------------------------


def create_key(work: Work, services: Services) -> Outcome:
    target = _target(work)
    if target.kms_private_key_id:
        return Outcome()
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
    target = _target(work)
    if target.certificate_pem:
        return Outcome()
    if not target.kms_private_key_id or not target.kms_public_key_id:
        raise StepError(f"{work.email}: no KMS key recorded before issue_certificate")
    ref = KeyRef(target.kms_label, target.kms_private_key_id, target.kms_public_key_id)
    certificate, _ = certify(
        work.email,
        ref,
        services.holding(target),
        services.issuer,
        services.profile,
        services.clock(),
        issuer_kms=services.issuer_kms(),
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
    )


def _chain(certificate_pem: str, services: Services) -> str:
    leaf = x509.load_pem_x509_certificate(certificate_pem.encode())
    return pkcs7_pem([leaf, *services.issuer.intermediates])


def upload_keypair(work: Work, services: Services) -> Outcome:
    target = _target(work)
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


def _current_identity(work: Work, services: Services) -> dict[str, Any] | None:
    try:
        return services.gmail.get_identity(work.email)
    except GoogleAPIError as error:
        if _not_found(error):
            return None
        raise


def insert_identity(work: Work, services: Services) -> Outcome:
    """Point the user's identity at the target key pair; earlier generations are superseded."""
    target = _target(work)
    if not target.gmail_key_pair_id:
        raise StepError(f"{work.email}: no Gmail key pair recorded before insert_identity")
    if work.kind is TaskKind.PROVISION:
        previous = _create_identity(work, services, target.gmail_key_pair_id)
    else:
        previous = _point_identity(work, services, target.gmail_key_pair_id)
    outcome = Outcome(
        audit={"key_pair_id": target.gmail_key_pair_id, "previous_key_pair_id": previous}
        if previous != target.gmail_key_pair_id
        else None
    )
    outcome.update(target.id, status=KeyPairStatus.ACTIVE)
    for other in work.others:
        if other.status is KeyPairStatus.ACTIVE:
            outcome.update(other.id, status=KeyPairStatus.SUPERSEDED)
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
    identity = _current_identity(work, services)
    previous = identity.get("primaryKeyPairId") if identity else None
    if identity is None:
        services.gmail.create_identity(work.email, key_pair_id)
    elif previous != key_pair_id:
        services.gmail.patch_identity(work.email, key_pair_id)
    return str(previous) if previous else None


# --- repair ---------------------------------------------------------------------------


def repair_keypair(work: Work, services: Services) -> Outcome:
    """The active generation's key pair must exist in Gmail and be enabled; re-upload if gone."""
    target = _target(work)
    if not target.gmail_key_pair_id:
        return upload_keypair(work, services)
    try:
        keypair = services.gmail.get_keypair(work.email, target.gmail_key_pair_id)
    except GoogleAPIError as error:
        if not _not_found(error):
            raise
        missing = replace(work, target=replace(target, gmail_key_pair_id=None))
        uploaded = upload_keypair(missing, services)
        uploaded.audit = {**(uploaded.audit or {}), "was_missing": True}
        return uploaded
    if keypair.get("enablementState") == "disabled":
        services.gmail.enable_keypair(work.email, target.gmail_key_pair_id)
        return Outcome(audit={"key_pair_id": target.gmail_key_pair_id, "re_enabled": True})
    return Outcome()


# --- deprovision ----------------------------------------------------------------------


def delete_identity(work: Work, services: Services) -> Outcome:
    try:
        if _current_identity(work, services) is None:
            return Outcome()
        services.gmail.delete_identity(work.email)
    except GoogleAPIError as error:
        if _mailbox_unavailable(error):
            return Outcome(audit=dict(_UNAVAILABLE))
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
        if _mailbox_unavailable(error):
            return Outcome(audit=dict(_UNAVAILABLE))
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
        status = KeyPairStatus.DISABLED if kp.gmail_key_pair_id else KeyPairStatus.ABANDONED
        outcome.update(kp.id, status=status)
    outcome.audit = {"revoked": revoked}
    return outcome


# Each task kind runs these steps in order; the task's next_step is its checkpoint.
PIPELINES: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.PROVISION: ("create_key", "issue_certificate", "upload_keypair", "insert_identity"),
    TaskKind.RENEW: ("create_key", "issue_certificate", "upload_keypair", "insert_identity"),
    TaskKind.REPLACE: ("create_key", "issue_certificate", "upload_keypair", "insert_identity"),
    TaskKind.REPAIR: ("repair_keypair", "insert_identity"),
    TaskKind.DEPROVISION: ("delete_identity", "disable_keypairs", "revoke_keys"),
}

STEPS: dict[str, Step] = {
    "create_key": create_key,
    "issue_certificate": issue_certificate,
    "upload_keypair": upload_keypair,
    "insert_identity": insert_identity,
    "repair_keypair": repair_keypair,
    "delete_identity": delete_identity,
    "disable_keypairs": disable_keypairs,
    "revoke_keys": revoke_keys,
}


def next_step(kind: TaskKind, current: str | None) -> str | None:
    """The step after ``current`` in ``kind``'s pipeline (the first when None); None at the end."""
    steps = PIPELINES[kind]
    if current is None:
        return steps[0]
    index = steps.index(current)
    return steps[index + 1] if index + 1 < len(steps) else None
