"""The plan's data: what it reads (views of the state store, the policy) and what it decides
(actions, holds, the plan). Plain frozen dataclasses; no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncd.directory.base import DirectoryUser, SkippedEntry
from syncd.domain import ActionKind, KeyPairStatus, ReasonCode, TaskKind, TaskStatus


@dataclass(frozen=True, slots=True)
class CredentialView:
    """The active generation: the key pair Gmail's identity points at."""

    generation: int
    not_after: datetime | None
    not_before: datetime | None = None
    verified_at: datetime | None = None
    """When a pass last found it whole in Gmail and the KMS (None: not since it was made)."""
    drift: ReasonCode | None = None
    """What the last verification found changed outside syncd (None: nothing)."""
    drift_detail: str | None = None
    profile: Mapping[str, object] | None = None
    """What the certificate was issued with (DesiredProfile.record); None: not known."""
    origin: str = "syncd"
    """``syncd``, or ``adopted``: a key pair made by hand that syncd took over."""


@dataclass(frozen=True, slots=True)
class RetiredKeyPair:
    """An earlier generation still in Gmail: superseded (enabled) or disabled."""

    generation: int
    status: KeyPairStatus
    superseded_at: datetime | None = None
    disabled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaskView:
    kind: TaskKind
    status: TaskStatus  # pending | running | failed
    next_step: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    permanent: bool = False
    """Failed for a reason retrying will not fix (no next attempt)."""

    def __post_init__(self) -> None:  # the boundary: plain strings become the enums
        object.__setattr__(self, "kind", TaskKind(self.kind))
        object.__setattr__(self, "status", TaskStatus(self.status))


@dataclass(frozen=True, slots=True)
class UserView:
    """What the state store knows of one user."""

    email: str
    directory_id: str
    in_scope: bool
    active: CredentialView | None = None
    """The generation Gmail's identity points at, if provisioning finished."""
    open_task: TaskView | None = None
    holds_credentials: bool = False
    """Anything left to undo: an enabled key pair, a KMS key, an identity."""
    missing_since: datetime | None = None
    """First of the consecutive earlier reads that missed the user (None: listed last time)."""
    retired: tuple[RetiredKeyPair, ...] = ()
    """Earlier generations still in Gmail (superseded or disabled), oldest first."""
    previous_email: str | None = None
    """The address before the last rename (None: never renamed)."""
    aliases: tuple[str, ...] = ()
    """The aliases the last directory read gave."""


@dataclass(frozen=True)
class DesiredProfile:
    """What a certificate issued now would carry (the ``certificate`` and ``ca`` sections).

    ``record`` is the dict stored with each key pair (``key_pairs.profile``): the plan compares
    a credential's record with the desired one, key by key, to find configuration drift.
    """

    key_bits: int = 3072
    hash: str = "sha256"
    subject_template: str = "CN={email}"
    crl: tuple[str, ...] = ()
    aia_ca_issuers: tuple[str, ...] = ()
    aia_ocsp: tuple[str, ...] = ()
    issuer: str = "default"
    include_aliases: bool = False

    def record(self, aliases: tuple[str, ...] = ()) -> dict[str, object]:
        return {
            "key_bits": self.key_bits,
            "hash": self.hash,
            "subject_template": self.subject_template,
            "crl": list(self.crl),
            "aia_ca_issuers": list(self.aia_ca_issuers),
            "aia_ocsp": list(self.aia_ocsp),
            "issuer": self.issuer,
            "aliases": sorted(aliases) if self.include_aliases else [],
        }


@dataclass(frozen=True)
class Policy:
    renew_before: timedelta
    max_deprovision: str  # "25" or "10%"
    allow_mass_deprovision: bool = False
    deprovision_after: timedelta = timedelta(hours=1)
    """How long a user must be missing from the directory before being deprovisioned."""
    verify_every: timedelta = timedelta(days=7)
    """Every active credential is verified against Gmail and the KMS at least this often."""
    reissue_per_pass: str = "1%"
    """Most credentials re-issued for configuration drift in one pass: a count or a %."""
    profile: DesiredProfile | None = None
    """What certificates issued now carry (None: configuration drift is not looked for)."""
    superseded_disable_after: timedelta | None = None
    """Disable a superseded key pair this long after it was superseded (None: never)."""
    obliterate_after: timedelta | None = None
    """Obliterate a key pair disabled this long ago (None: never; at least 30 days)."""
    existing_credentials: str = "hold"
    """hold | adopt | replace: what to do with an identity syncd did not make."""
    issuer_not_after: datetime | None = None
    """When the issuing CA (``ca.label``) expires: no certificate outlives it (None: unknown)."""
    max_new_per_pass: str | None = None
    """Most users given their first credential in one pass: a count or a % of the users
    listed in scope and enabled (None: no limit; :mod:`syncd.plan.rollout`)."""
    rollout_order: tuple[str, ...] = ()
    """Org units, DNs or groups whose users get their first credential first."""


@dataclass(frozen=True)
class Action:
    email: str
    kind: ActionKind
    reason: str
    task_kind: TaskKind
    """The persistent task this action runs as (provision, renew, deprovision, ...)."""
    directory_id: str | None = None
    code: ReasonCode | None = field(default=None, compare=False)
    """The reason's stable code (None only for actions made outside the plan, in tests)."""
    seen_task: TaskView | None = field(default=None, compare=False)
    """The open task a resume or retry continues, as the plan saw it: in a shared group other
    instances keep working while a pass is planned, and enqueue leaves alone a task one of
    them has moved on since."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ActionKind(self.kind))
        object.__setattr__(self, "task_kind", TaskKind(self.task_kind))


@dataclass(frozen=True)
class Hold:
    """A user deliberately left alone this pass, and why (shown by ``syncd plan``)."""

    email: str
    reason: str
    keeps_scope: bool = False
    """The user is not listed, yet stays in scope: missing for less than the grace period,
    or named by an unusable entry."""
    code: ReasonCode | None = field(default=None, compare=False)
    """The reason's stable code (None only for holds made outside the plan, in tests)."""


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    held: tuple[Hold, ...] = ()
    blocked_deprovisions: tuple[Action, ...] = ()
    blocked_reason: str | None = None
    skipped_entries: int = 0
    blocked_code: ReasonCode | None = field(default=None, compare=False)
    """The code of ``blocked_reason`` (set with it)."""
    pending_reissue: int = 0
    """Credentials out of date with the configuration left for later passes
    (``policy.reissue_per_pass``)."""
    deferred_new: int = 0
    """Users without a credential left for later passes (``policy.max_new_per_pass``)."""
    renames: tuple[tuple[str, str], ...] = ()
    """(new address, old address) of each user the plan took for renamed
    (:func:`syncd.plan.identity.pair_renames`): the state store renames the same ones."""

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for action in self.actions:
            totals[action.kind.value] = totals.get(action.kind.value, 0) + 1
        return totals

    @property
    def reassigned(self) -> frozenset[str]:
        """Addresses whose old credential this pass ends for a new directory id (REASSIGN):
        the state store takes their new directory id (for the others it waits)."""
        return frozenset(a.email for a in self.actions if a.kind is ActionKind.REASSIGN)

    @property
    def kept_in_scope(self) -> frozenset[str]:
        """Users the snapshot does not list who must stay in scope: nothing was decided
        about them this pass (held, or their deprovision blocked)."""
        return frozenset(
            [h.email for h in self.held if h.keeps_scope]
            + [a.email for a in self.blocked_deprovisions]
        )


@dataclass(frozen=True, slots=True)
class Subject:
    """One user as the rules see them: in the directory, in the state store, or both."""

    email: str
    listed: DirectoryUser | None
    known: UserView | None
    policy: Policy
    now: datetime
    unusable: SkippedEntry | None = None
    """A skipped directory entry naming this (unlisted) user."""
    verify_due: bool = False
    """This pass's rotating verification slice includes the user (syncd.plan.drift)."""
    renamed_from: str | None = None
    """The user's address in the state store when the directory lists them under a new one
    (same directory id); ``known`` is then that address's view."""

    @property
    def wanted(self) -> bool:
        return self.listed is not None and self.listed.enabled

    @property
    def directory_id(self) -> str | None:
        if self.listed is not None:
            return self.listed.directory_id
        return self.known.directory_id if self.known else None


Decision = Action | Hold | None
Rule = Callable[[Subject], Decision]


def act(
    subject: Subject, kind: ActionKind, code: ReasonCode, reason: str, task_kind: TaskKind
) -> Action:
    """The action ``kind`` for the subject, with its reason."""
    return Action(subject.email, kind, reason, task_kind, subject.directory_id, code)


def format_duration(value: timedelta) -> str:
    """``1h``, ``1h30m``, ``2d``, ``45s``: a grace period as the configuration writes it."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
