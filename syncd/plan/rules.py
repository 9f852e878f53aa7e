"""The chain of rules that decides what one pass does for one user.

Each rule looks at a :class:`Subject` and answers with an Action, a Hold, or None (not mine:
ask the next rule); the first answer decides. The rules of the later lifecycle concerns live in
their own modules (drift, identity, reissue, retire) and take their place in ``RULES`` here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from syncd.directory.base import DirectoryUser
from syncd.domain import EXISTING_CREDENTIALS_PREFIX, ActionKind, ReasonCode, TaskKind, TaskStatus
from syncd.plan.drift import drifted, verify_due
from syncd.plan.identity import address_reused, renamed
from syncd.plan.reissue import ORIGINS, config_changed, desired_record
from syncd.plan.retire import retire_due
from syncd.plan.views import (
    CredentialView,
    Decision,
    Hold,
    Policy,
    Rule,
    Subject,
    TaskView,
    UserView,
    act,
    format_duration,
)

_EVEN_IF_GONE = (TaskKind.DEPROVISION, TaskKind.RETIRE)
"""Task kinds that go on for a user who left (a departed user's key pairs are retired too)."""


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
    if task.kind not in _EVEN_IF_GONE and not s.wanted:
        return None
    step = task.next_step or "start"
    cause = (task.last_error or "").removeprefix(f"{step}: ")
    if cause.startswith(EXISTING_CREDENTIALS_PREFIX):  # says what was found and what to do
        return Hold(s.email, cause, code=ReasonCode.EXISTING_CREDENTIALS)
    return Hold(
        s.email,
        f"permanent failure at {step}: {cause}; fix the cause, then syncd resync --user {s.email}",
        code=ReasonCode.PERMANENT_FAILURE,
    )


def left_or_disabled(s: Subject) -> Decision:
    if s.wanted or s.known is None:
        return None
    task = s.known.open_task
    if not (s.known.holds_credentials or (task is not None and task.kind is not TaskKind.RETIRE)):
        return None  # nothing to undo (a departed user's key pairs may still be retired)
    if s.listed is not None:
        return act(
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
    return act(
        s,
        ActionKind.DEPROVISION,
        ReasonCode.LEFT_SCOPE,
        "no longer in the directory scope",
        TaskKind.DEPROVISION,
    )


def unfinished_task(s: Subject) -> Decision:
    task = s.known.open_task if s.known else None
    if task is None or not (s.wanted or task.kind is TaskKind.RETIRE):
        return None
    return _task_decision(s, task)


def not_provisioned(s: Subject) -> Decision:
    if not s.wanted or (s.known is not None and s.known.active is not None):
        return None
    if s.known is None:
        return act(
            s, ActionKind.PROVISION, ReasonCode.NEW_IN_SCOPE, "new in scope", TaskKind.PROVISION
        )
    return act(
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
    issuer_ends = s.policy.issuer_not_after
    if issuer_ends is not None and issuer_ends <= active.not_after:
        return Hold(
            s.email,
            f"certificate (generation {active.generation}) expires {active.not_after:%Y-%m-%d}: "
            f"certificates cannot outlive the issuing CA (expires {issuer_ends:%Y-%m-%d}); "
            "import a new CA and set ca.label",
            code=ReasonCode.ISSUER_EXPIRING,
        )
    if too_young_to_renew(active, s.now):
        return None
    return act(
        s,
        ActionKind.RENEW,
        ReasonCode.EXPIRING,
        f"certificate (generation {active.generation}) expires {active.not_after:%Y-%m-%d}",
        TaskKind.RENEW,
    )


def _task_decision(s: Subject, task: TaskView) -> Decision:
    step = task.next_step or "start"
    if task.status is not TaskStatus.FAILED:
        resume = act(
            s,
            ActionKind.RESUME,
            ReasonCode.TASK_INTERRUPTED,
            f"{task.kind} interrupted at {step}",
            task.kind,
        )
        return replace(resume, seen_task=task)
    if task.next_attempt_at is not None and task.next_attempt_at > s.now:
        return Hold(
            s.email,
            f"{task.kind} failed at {step} ({task.attempts} attempts); "
            f"next try after {task.next_attempt_at:%Y-%m-%d %H:%M}Z: {task.last_error or ''}",
            code=ReasonCode.BACKOFF_PENDING,
        )
    retry = act(
        s,
        ActionKind.RETRY,
        ReasonCode.BACKOFF_ELAPSED,
        f"{task.kind} failed at {step}; backoff elapsed",
        task.kind,
    )
    return replace(retry, seen_task=task)


def too_young_to_renew(active: CredentialView, now: datetime) -> bool:
    """A credential younger than half its validity is never renewed for expiry: a certificate
    cut short (by its issuer's own expiry) must not be renewed by every pass."""
    if active.not_before is None or active.not_after is None:
        return False
    return now - active.not_before < (active.not_after - active.not_before) / 2


RULES: tuple[Rule, ...] = (
    permanent_failure,
    unfinished_deprovision,
    named_by_unusable_entry,
    left_or_disabled,
    address_reused,
    renamed,
    unfinished_task,
    not_provisioned,
    drifted,
    expiring,
    config_changed,
    retire_due,
    verify_due,
)
"""The chain, in order: the first rule that answers decides."""


def decide(subject: Subject, rules: Sequence[Rule] = RULES) -> Decision:
    for rule in rules:
        decision = rule(subject)
        if decision is not None:
            return decision
    return None


def quiet(
    listed: DirectoryUser | None,
    known: UserView | None,
    policy: Policy,
    now: datetime,
    verify_due: bool,
    plain_record: Mapping[str, object] | None = None,
) -> bool:
    """True when every rule of ``RULES`` would answer None for this user (not renamed, not
    named by a skipped entry): listed, enabled, under the same directory id, with an active
    credential that has no drift, no open task, no earlier key pair, no renewal due, the
    configured profile and no verification due. Most users of an idle pass are; the plan
    skips the chain for them.

    A shortcut, so it may answer False for a user the chain leaves alone, never True for a
    user a rule would answer. Keep it in step with ``RULES``: a new rule that can answer for
    such a user must be checked here too (tests/plan/test_quiet.py runs both over many
    users).

    ``plain_record``: ``desired_record(policy.profile, ())``, when the caller made it once
    for every user: users without aliases are compared with it (no hashing of the profile).
    """
    if listed is None or known is None or not listed.enabled:
        return False
    active = known.active
    if (
        active is None
        or verify_due
        or known.open_task is not None
        or known.retired
        or active.drift is not None
        or listed.directory_id != known.directory_id
    ):
        return False
    if active.not_after is not None and active.not_after - policy.renew_before <= now:
        return False
    profile = policy.profile
    if profile is None or active.origin not in ORIGINS or active.profile is None:
        return True
    if plain_record is not None and not listed.aliases:
        return active.profile == plain_record
    return active.profile == desired_record(profile, listed.aliases)
