"""The plan: what one pass must do, as a pure function of (snapshot, state, policy, now).

Each user is run through a chain of small rules; the first rule that answers decides, with a
reason a person can read (``syncd plan`` prints exactly these). No I/O happens here: the state
arrives as plain views, built by the pipeline from the state store.

Safety rules sit around the chain: a snapshot with no users while syncd still manages some is a
source failure, never "everyone left"; and a pass that would deprovision more users than
``policy.max_deprovision`` allows deprovisions nobody and says why. A user named by an entry the
source skipped (present but unusable) keeps their current state; a user missing from the
directory is deprovisioned only once missing for ``policy.deprovision_after`` (disabled or
suspended in the directory is an explicit signal: deprovisioned at once). Users held for these
reasons, and users whose deprovision was blocked, stay in scope (``Plan.kept_in_scope``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncd.directory.base import DirectoryUser, SkippedEntry, Snapshot, SourceError
from syncd.domain import ActionKind, ReasonCode, TaskKind, TaskStatus


@dataclass(frozen=True)
class CredentialView:
    generation: int
    not_after: datetime | None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Policy:
    renew_before: timedelta
    max_deprovision: str  # "25" or "10%"
    allow_mass_deprovision: bool = False
    deprovision_after: timedelta = timedelta(hours=1)
    """How long a user must be missing from the directory before being deprovisioned."""


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

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for action in self.actions:
            totals[action.kind.value] = totals.get(action.kind.value, 0) + 1
        return totals

    @property
    def kept_in_scope(self) -> frozenset[str]:
        """Users the snapshot does not list who must stay in scope: nothing was decided
        about them this pass (held, or their deprovision blocked)."""
        return frozenset(
            [h.email for h in self.held if h.keeps_scope]
            + [a.email for a in self.blocked_deprovisions]
        )


@dataclass(frozen=True)
class Subject:
    """One user as the rules see them: in the directory, in the state store, or both."""

    email: str
    listed: DirectoryUser | None
    known: UserView | None
    policy: Policy
    now: datetime
    unusable: SkippedEntry | None = None
    """A skipped directory entry naming this (unlisted) user."""

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


def _act(
    subject: Subject, kind: ActionKind, code: ReasonCode, reason: str, task_kind: TaskKind
) -> Action:
    return Action(subject.email, kind, reason, task_kind, subject.directory_id, code)


# --- the rules, in order ------------------------------------------------------------------


def unfinished_deprovision(s: Subject) -> Decision:
    task = s.known.open_task if s.known else None
    if task is None or task.kind is not TaskKind.DEPROVISION:
        return None
    return _task_decision(s, task)


def named_by_unusable_entry(s: Subject) -> Decision:
    if s.listed is not None or s.known is None or s.unusable is None:
        return None
    return Hold(
        s.email,
        f"directory entry unusable: {s.unusable.where}: {s.unusable.reason}; keeping current state",
        keeps_scope=True,
        code=ReasonCode.UNUSABLE_ENTRY,
    )


def permanent_failure(s: Subject) -> Decision:
    """A task that failed permanently is not retried: the user is held until a resync (which
    replaces the task). A user who leaves scope is still deprovisioned."""
    task = s.known.open_task if s.known else None
    if task is None or not task.permanent or task.status is not TaskStatus.FAILED:
        return None
    if task.kind is not TaskKind.DEPROVISION and not s.wanted:
        return None
    step = task.next_step or "start"
    cause = (task.last_error or "").removeprefix(f"{step}: ")
    return Hold(
        s.email,
        f"permanent failure at {step}: {cause}; fix the cause, then "
        f"syncd resync --user {s.email}",
        code=ReasonCode.PERMANENT_FAILURE,
    )


def left_or_disabled(s: Subject) -> Decision:
    if s.wanted or s.known is None:
        return None
    if not (s.known.holds_credentials or s.known.open_task):
        return None
    if s.listed is not None:
        return _act(
            s,
            ActionKind.DEPROVISION,
            ReasonCode.DISABLED_IN_DIRECTORY,
            "disabled or suspended in the directory",
            TaskKind.DEPROVISION,
        )
    since = s.known.missing_since or s.now
    grace = s.policy.deprovision_after
    if s.now - since < grace:
        return Hold(
            s.email,
            f"not in the directory: missing since {since:%Y-%m-%d %H:%M}Z, deprovision after "
            f"{format_duration(grace)} (at {since + grace:%Y-%m-%d %H:%M}Z)",
            keeps_scope=True,
            code=ReasonCode.MISSING_GRACE_PERIOD,
        )
    return _act(
        s,
        ActionKind.DEPROVISION,
        ReasonCode.LEFT_SCOPE,
        "no longer in the directory scope",
        TaskKind.DEPROVISION,
    )


def format_duration(value: timedelta) -> str:
    """``1h``, ``1h30m``, ``2d``, ``45s``: a grace period as the configuration writes it."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def unfinished_task(s: Subject) -> Decision:
    task = s.known.open_task if s.known else None
    if task is None or not s.wanted:
        return None
    return _task_decision(s, task)


def not_provisioned(s: Subject) -> Decision:
    if not s.wanted or (s.known is not None and s.known.active is not None):
        return None
    if s.known is None:
        return _act(
            s, ActionKind.PROVISION, ReasonCode.NEW_IN_SCOPE, "new in scope", TaskKind.PROVISION
        )
    return _act(
        s,
        ActionKind.PROVISION,
        ReasonCode.NO_CREDENTIAL,
        "in scope without a credential",
        TaskKind.PROVISION,
    )


def expiring(s: Subject) -> Decision:
    active = s.known.active if s.known else None
    if not s.wanted or active is None or active.not_after is None:
        return None
    if active.not_after - s.policy.renew_before > s.now:
        return None
    return _act(
        s,
        ActionKind.RENEW,
        ReasonCode.EXPIRING,
        f"certificate (generation {active.generation}) expires {active.not_after:%Y-%m-%d}",
        TaskKind.RENEW,
    )


def _task_decision(s: Subject, task: TaskView) -> Decision:
    step = task.next_step or "start"
    if task.status is not TaskStatus.FAILED:
        return _act(
            s,
            ActionKind.RESUME,
            ReasonCode.TASK_INTERRUPTED,
            f"{task.kind} interrupted at {step}",
            task.kind,
        )
    if task.next_attempt_at is not None and task.next_attempt_at > s.now:
        return Hold(
            s.email,
            f"{task.kind} failed at {step} ({task.attempts} attempts); "
            f"next try after {task.next_attempt_at:%Y-%m-%d %H:%M}Z: {task.last_error or ''}",
            code=ReasonCode.BACKOFF_PENDING,
        )
    return _act(
        s,
        ActionKind.RETRY,
        ReasonCode.BACKOFF_ELAPSED,
        f"{task.kind} failed at {step}; backoff elapsed",
        task.kind,
    )


RULES: tuple[Rule, ...] = (
    permanent_failure,
    unfinished_deprovision,
    named_by_unusable_entry,
    left_or_disabled,
    unfinished_task,
    not_provisioned,
    expiring,
)


# --- safety -------------------------------------------------------------------------------


def deprovision_limit(max_deprovision: str, active_users: int) -> int:
    """How many users one pass may deprovision: a count, or a percentage of active users."""
    text = max_deprovision.strip()
    if text.endswith("%"):
        return math.floor(active_users * int(text[:-1]) / 100)
    return int(text)


def _managed(views: Iterable[UserView]) -> list[UserView]:
    return [v for v in views if v.in_scope and (v.holds_credentials or v.open_task)]


def check_snapshot(snapshot: Snapshot, views: Sequence[UserView]) -> None:
    """An empty snapshot while users are managed is a source failure."""
    managed = len(_managed(views))
    if not snapshot.users and managed:
        raise SourceError(
            f"the {snapshot.source} directory source returned no users while syncd manages "
            f"{managed}; treating it as a source failure (nobody is deprovisioned)"
        )


# --- the plan -----------------------------------------------------------------------------


def decide(subject: Subject, rules: Sequence[Rule] = RULES) -> Decision:
    for rule in rules:
        decision = rule(subject)
        if decision is not None:
            return decision
    return None


def unusable_entries(
    skipped: Sequence[SkippedEntry], views: Iterable[UserView], listed: Iterable[str]
) -> dict[str, SkippedEntry]:
    """Known users the snapshot does not list, each with a skipped entry naming them (by
    email, else by directory id)."""
    by_email = {entry.email: entry for entry in skipped if entry.email}
    by_id = {entry.directory_id: entry for entry in skipped if entry.directory_id}
    present = set(listed)
    found = {}
    for view in views:
        if view.email in present:
            continue
        entry = by_email.get(view.email) or by_id.get(view.directory_id)
        if entry is not None:
            found[view.email] = entry
    return found


def plan(snapshot: Snapshot, views: Sequence[UserView], policy: Policy, now: datetime) -> Plan:
    """Every action this pass should take, with reasons; raises SourceError on a bad snapshot."""
    check_snapshot(snapshot, views)
    listed = snapshot.by_email()
    known = {view.email: view for view in views}
    unusable = unusable_entries(snapshot.skipped, views, listed)
    actions: list[Action] = []
    held: list[Hold] = []
    for email in sorted(listed.keys() | known.keys()):
        subject = Subject(
            email, listed.get(email), known.get(email), policy, now, unusable.get(email)
        )
        decision = decide(subject)
        if isinstance(decision, Action):
            actions.append(decision)
        elif isinstance(decision, Hold):
            held.append(decision)

    deprovisions = [a for a in actions if a.kind is ActionKind.DEPROVISION]
    active = len(_managed(views))
    limit = deprovision_limit(policy.max_deprovision, active)
    if len(deprovisions) > limit and not policy.allow_mass_deprovision:
        reason = (
            f"{len(deprovisions)} of {active} managed users would be deprovisioned, more than "
            f"policy.max_deprovision ({policy.max_deprovision} = {limit}); nobody was "
            "deprovisioned. Check the directory, then rerun with --allow-mass-deprovision "
            "if this is intended"
        )
        kept = tuple(a for a in actions if a.kind is not ActionKind.DEPROVISION)
        return Plan(
            kept,
            tuple(held),
            tuple(deprovisions),
            reason,
            len(snapshot.skipped),
            blocked_code=ReasonCode.MASS_DEPROVISION_BLOCKED,
        )
    return Plan(tuple(actions), tuple(held), skipped_entries=len(snapshot.skipped))


def on_demand(
    emails: Iterable[str], views: Sequence[UserView], *, force: bool
) -> tuple[list[Action], list[str]]:
    """``syncd resync``: a repair (or, with force, a replacement) for each known user.

    Returns the actions and the emails syncd does not know.
    """
    known = {view.email: view for view in views}
    actions, unknown = [], []
    for email in emails:
        view = known.get(email)
        if view is None:
            unknown.append(email)
        elif force:
            actions.append(
                Action(
                    email,
                    ActionKind.REPLACE,
                    "resync --force: fresh key pair",
                    TaskKind.REPLACE,
                    view.directory_id,
                    ReasonCode.RESYNC_REPLACE,
                )
            )
        else:
            actions.append(
                Action(
                    email,
                    ActionKind.REPAIR,
                    "resync: verify against Gmail and the KMS",
                    TaskKind.REPAIR,
                    view.directory_id,
                    ReasonCode.RESYNC_REPAIR,
                )
            )
    return actions, unknown


__all__ = [
    "RULES",
    "Action",
    "ActionKind",
    "CredentialView",
    "Hold",
    "Plan",
    "Policy",
    "ReasonCode",
    "Subject",
    "TaskView",
    "UserView",
    "check_snapshot",
    "decide",
    "deprovision_limit",
    "format_duration",
    "on_demand",
    "plan",
    "unusable_entries",
]
