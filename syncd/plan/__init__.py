"""The plan: what one pass must do, as a pure function of (snapshot, state, policy, now).

Each user is run through a chain of small rules (:mod:`syncd.plan.rules`); the first rule that
answers decides, with a reason a person can read and a stable code (``syncd plan`` prints
both). No I/O happens here: the state arrives as plain views (:mod:`syncd.plan.views`), built by
the pipeline from the state store.

Safety rules sit around the chain (:mod:`syncd.plan.safety`): a snapshot with no users while
syncd still manages some is a source failure, never "everyone left"; and a pass that would
deprovision (or hand to a new owner) more users than ``policy.max_deprovision`` allows
deprovisions nobody and says why. A user named by an entry the source skipped (present but
unusable) keeps their current state; a user missing from the directory is deprovisioned only
once missing for ``policy.deprovision_after`` (disabled or suspended in the directory is an
explicit signal: deprovisioned at once). Users held for these reasons, and users whose
deprovision was blocked, stay in scope (``Plan.kept_in_scope``).

Across users, before the chain: renames are paired (:mod:`syncd.plan.identity`) and the
rotating verification slice is chosen (:mod:`syncd.plan.drift`); after it, re-issues for
configuration drift are throttled (:mod:`syncd.plan.reissue`), and so are first credentials
in a rollout (:mod:`syncd.plan.rollout`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from syncd.directory.base import Snapshot
from syncd.domain import ActionKind, ReasonCode, TaskKind
from syncd.plan.drift import verification_slice
from syncd.plan.identity import pair_renames
from syncd.plan.reissue import desired_record, throttle
from syncd.plan.rollout import throttle_new
from syncd.plan.rules import RULES, decide, quiet
from syncd.plan.safety import check_snapshot, deprovision_limit, managed, unusable_entries
from syncd.plan.views import (
    Action,
    CredentialView,
    DesiredProfile,
    Hold,
    Plan,
    Policy,
    RetiredKeyPair,
    Subject,
    TaskView,
    UserView,
    format_duration,
)

DEPROVISIONING = (ActionKind.DEPROVISION, ActionKind.REASSIGN)
"""Actions that end a credential: counted against policy.max_deprovision."""


def plan(
    snapshot: Snapshot,
    views: Sequence[UserView],
    policy: Policy,
    now: datetime,
    last_pass_at: datetime | None = None,
) -> Plan:
    """Every action this pass should take, with reasons; raises SourceError on a bad snapshot.

    ``last_pass_at``: when the previous pass started (None: no pass before), which sizes the
    verification slice.
    """
    check_snapshot(snapshot, views)
    listed = snapshot.by_email()
    known = {view.email: view for view in views}
    renames = pair_renames(listed, known)
    renamed_away = {view.email for view in renames.values()}
    renamed_pairs = tuple(sorted((new, view.email) for new, view in renames.items()))
    unusable = unusable_entries(snapshot.skipped, views, listed)
    verify = verification_slice(views, policy, now, last_pass_at)
    actions: list[Action] = []
    held: list[Hold] = []
    plain = desired_record(policy.profile, ()) if policy.profile is not None else None
    for email in sorted((listed.keys() | known.keys()) - renamed_away):
        before = renames.get(email)
        entry = listed.get(email)
        view = before if before is not None else known.get(email)
        if before is None and quiet(entry, view, policy, now, email in verify, plain):
            continue  # every rule would answer None: the chain is skipped
        subject = Subject(
            email,
            entry,
            view,
            policy,
            now,
            unusable.get(email),
            verify_due=email in verify,
            renamed_from=before.email if before is not None else None,
        )
        decision = decide(subject)
        if isinstance(decision, Action):
            actions.append(decision)
        elif isinstance(decision, Hold):
            held.append(decision)
    active = len(managed(views))
    actions, pending_reissue = throttle(actions, policy, active)
    actions, deferred_new = throttle_new(
        actions, policy.max_new_per_pass, policy.rollout_order, listed, known
    )

    deprovisions = [a for a in actions if a.kind in DEPROVISIONING]
    limit = deprovision_limit(policy.max_deprovision, active)
    if len(deprovisions) > limit and not policy.allow_mass_deprovision:
        reason = (
            f"{len(deprovisions)} of {active} managed users would be deprovisioned, more than "
            f"policy.max_deprovision ({policy.max_deprovision} = {limit}); nobody was "
            "deprovisioned. Check the directory, then rerun with --allow-mass-deprovision "
            "if this is intended"
        )
        kept = tuple(a for a in actions if a.kind not in DEPROVISIONING)
        return Plan(
            kept,
            tuple(held),
            tuple(deprovisions),
            reason,
            len(snapshot.skipped),
            blocked_code=ReasonCode.MASS_DEPROVISION_BLOCKED,
            pending_reissue=pending_reissue,
            deferred_new=deferred_new,
            renames=renamed_pairs,
        )
    return Plan(
        tuple(actions),
        tuple(held),
        skipped_entries=len(snapshot.skipped),
        pending_reissue=pending_reissue,
        deferred_new=deferred_new,
        renames=renamed_pairs,
    )


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
    "DesiredProfile",
    "Hold",
    "Plan",
    "Policy",
    "ReasonCode",
    "RetiredKeyPair",
    "Subject",
    "TaskKind",
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
