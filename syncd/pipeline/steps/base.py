"""What every provisioning step works with: the services it acts on, the task as it sees it
(Work, KeyPairView) and what it returns (Outcome). The steps: each idempotent, each returning
what to record.

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
from datetime import datetime, timedelta
from typing import Any, Protocol

from syncd.credentials.issuers import IssuingCA
from syncd.domain import KeyPairStatus, TaskKind
from syncd.errors import SyncdError
from syncd.google.errors import GoogleAPIError
from syncd.kms.base import KeyManager, PrivateKeyFormat
from syncd.kms.keyring import Keyring
from syncd.pki.profile import LeafProfile
from syncd.plan import DesiredProfile


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
    def delete_identity(self, user: str, email: str | None = None) -> None: ...
    def obliterate_keypair(self, user: str, key_pair_id: str) -> None: ...


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
    desired: DesiredProfile = field(default_factory=DesiredProfile)
    """What a certificate issued now carries (recorded with it as its profile)."""
    existing_credentials: str = "hold"
    """policy.existing_credentials: hold | adopt | replace."""
    issuers: tuple[IssuingCA, ...] = ()
    """Every imported issuing CA (``issuer`` among them, always tried first): names the issuer
    of a certificate made before a CA rollover when it is revoked, and a key pair made by hand
    is adopted when its certificate chains to one of them."""
    superseded_disable_after: timedelta | None = None
    """policy.superseded_disable_after (None: superseded key pairs stay enabled)."""
    obliterate_after: timedelta | None = None
    """policy.obliterate_after_days (None: disabled key pairs are never obliterated)."""

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
    superseded_at: datetime | None = None
    disabled_at: datetime | None = None


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
    previous_email: str | None = None
    """The user's address before the last rename (a rename task deletes its identity)."""
    aliases: tuple[str, ...] = ()
    """The user's aliases from the last directory read."""
    fresh_certificate: bool = False
    """The target's certificate was issued by this process and no upload of it has been tried
    yet, so Gmail cannot have it: upload_keypair need not look for it first."""
    fresh_key: bool = False
    """The target generation was made by this pass's plan and no create_key of it has been
    tried yet, so no KMS can hold a key with its label: create_key need not look for one
    first (a Locate scans every object on some KMS servers, PyKMIP's among them)."""
    first_claim: bool = False
    """No claim of this task came before the one working on it now: no instance (this one or
    another of a shared group) can have run any of its steps."""

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
            # Only create_key makes a key with the target's label, and it records it.
            fresh_key=self.fresh_key and not outcome.key_pairs,
        )


@dataclass(frozen=True)
class RevokedCertificate:
    """A certificate to list in its issuer's CRL (a row of ``revocations``)."""

    key_pair_id: int | None
    issuer_label: str
    serial_hex: str
    reason: str
    """An RFC 5280 reason name (syncd.pki.crl.REASONS)."""


@dataclass
class Outcome:
    """What a step did, to be recorded with the checkpoint in one transaction."""

    key_pairs: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Column updates by key pair id."""
    audit: dict[str, Any] | None = None
    """Audit detail; None when the step found nothing to do."""
    revocations: list[RevokedCertificate] = field(default_factory=list)
    """Certificates the step revoked: inserted into ``revocations`` (the CRL's entries) with
    the checkpoint, those already there kept."""

    def update(self, key_pair_id: int, **columns: Any) -> Outcome:
        self.key_pairs.setdefault(key_pair_id, {}).update(columns)
        return self


Step = Callable[[Work, Services], Outcome]
_VIEW_FIELDS = {f.name for f in fields(KeyPairView)}


def target_of(work: Work) -> KeyPairView:
    if work.target is None:
        raise StepError(f"{work.kind} task {work.task_id} for {work.email} has no key pair")
    return work.target


def not_found(error: GoogleAPIError) -> bool:
    return error.status == 404


def mailbox_unavailable(error: GoogleAPIError) -> bool:
    """Gmail refuses every call for a suspended user or one without mail service."""
    return (
        error.status == 400
        and error.reason == "FAILED_PRECONDITION"
        and "mail service not enabled" in error.google_message.lower()
    )


UNAVAILABLE = {
    "gmail": "mailbox unavailable (suspended, or no mail service): its CSE identity and key "
    "pairs are left in Gmail, where nobody can use them"
}


def current_identity(work: Work, services: Services) -> dict[str, Any] | None:
    try:
        return services.gmail.get_identity(work.email)
    except GoogleAPIError as error:
        if not_found(error):
            return None
        raise
