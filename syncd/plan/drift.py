"""Drift detection: which active credentials a pass verifies (a rotating slice, so that every
one is verified at least once per ``policy.verify_every`` without a burst of API calls), and
the repair a drift found by a verification calls for.

The verification itself (Gmail's identity and key pair, the KMS key) is the pipeline's
``verify_credential`` step; it records what it found on the key pair (``verified_at``,
``drift``), which the next plan reads here: a drift becomes a repair (or, for a KMS key revoked
outside syncd, a replacement), with the drift's reason code.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from syncd.domain import ActionKind, ReasonCode, TaskKind
from syncd.plan.views import CredentialView, Decision, Policy, Subject, UserView, act

DRIFT_PROSE: dict[ReasonCode, str] = {
    ReasonCode.DRIFT_IDENTITY_MISSING: "identity deleted outside syncd",
    ReasonCode.DRIFT_IDENTITY_REPOINTED: "identity re-pointed outside syncd",
    ReasonCode.DRIFT_KEYPAIR_DISABLED: "key pair disabled outside syncd",
    ReasonCode.DRIFT_KEYPAIR_MISSING: "key pair deleted outside syncd",
    ReasonCode.DRIFT_KMS_KEY_REVOKED: "KMS key revoked outside syncd",
}
"""What each drift code means, as ``syncd plan`` and the report say it."""

_NEVER = datetime.min.replace(tzinfo=None)


def last_verified(active: CredentialView) -> datetime | None:
    """When the credential was last known whole: its last verification, else its issue."""
    return active.verified_at or active.not_before


def _candidates(views: Sequence[UserView]) -> list[UserView]:
    """In-scope users with an active credential, no open task and no drift awaiting repair."""
    return [
        view
        for view in views
        if view.in_scope
        and view.active is not None
        and view.open_task is None
        and view.active.drift is None
    ]


def _order(view: UserView) -> tuple[bool, datetime, str]:
    assert view.active is not None
    seen = last_verified(view.active)
    # Unknown age first; aware and naive datetimes never meet in one comparison.
    return (seen is not None, (seen.replace(tzinfo=None) if seen else _NEVER), view.email)


def slice_size(count: int, verify_every: timedelta, now: datetime, last: datetime | None) -> int:
    """How many of ``count`` credentials a pass at ``now`` verifies when the previous one
    started at ``last``: about count x (now - last) / verify_every, never more than count.

    The rate is held exactly, pass after pass, without rounding every pass up: ``count`` slots
    are spread evenly over each ``verify_every`` (one every verify_every / count, counted from
    the epoch) and a pass takes the slots passed since the previous pass. Frequent passes over
    few users thus verify nobody most of the time, instead of one user every pass.
    """
    if last is None or count == 0 or verify_every <= timedelta(0):
        return 0
    if now - last >= verify_every:
        return count
    if now <= last:
        return 0
    step = verify_every.total_seconds() / count
    taken = math.floor(now.timestamp() / step) - math.floor(last.timestamp() / step)
    return max(0, min(count, taken))


def verification_slice(
    views: Sequence[UserView], policy: Policy, now: datetime, last_pass_at: datetime | None
) -> frozenset[str]:
    """The emails this pass verifies: the least recently verified credentials, as many as the
    time since the previous pass calls for (:func:`slice_size`), and every one whose last
    verification (or, never verified, its issue) is at least ``policy.verify_every`` old.

    No previous pass: only the overdue ones (the first pass provisions; it verifies nobody
    on the strength of an interval it cannot know).
    """
    candidates = _candidates(views)
    size = slice_size(len(candidates), policy.verify_every, now, last_pass_at)
    # The slice: the first ``size`` in _order (a total order: emails are unique), found
    # without sorting everyone (an idle pass soon after the previous one takes none).
    chosen = {view.email for view in heapq.nsmallest(size, candidates, key=_order)}
    overdue = now - policy.verify_every
    for view in candidates:
        assert view.active is not None
        seen = last_verified(view.active)
        if seen is not None and seen <= overdue:
            chosen.add(view.email)
    return frozenset(chosen)


def drift_reason(code: ReasonCode, detail: str | None, found: datetime | None) -> str:
    """``identity deleted outside syncd (found 2026-11-30 12:00Z): <detail>``."""
    text = DRIFT_PROSE.get(code, code.value.replace("_", " "))
    if found is not None:
        text += f" (found {found:%Y-%m-%d %H:%M}Z)"
    return f"{text}: {detail}" if detail else text


def drifted(s: Subject) -> Decision:
    """A drift the last verification found becomes its repair: the identity re-pointed (or
    made again) and the key pair uploaded or enabled again; a KMS key revoked outside syncd
    can sign and unwrap no more, so the user gets a fresh key pair instead."""
    active = s.known.active if s.known else None
    if not s.wanted or active is None or active.drift is None:
        return None
    reason = drift_reason(active.drift, active.drift_detail, active.verified_at)
    if active.drift is ReasonCode.DRIFT_KMS_KEY_REVOKED:
        return act(
            s, ActionKind.REPLACE, active.drift, f"{reason}; a fresh key pair", TaskKind.REPLACE
        )
    if active.drift is ReasonCode.DRIFT_KEYPAIR_MISSING and active.origin == "adopted":
        # An adopted key pair's private key was never in syncd's KMS: it cannot be uploaded
        # again, only replaced by a key pair of syncd's own.
        return act(
            s,
            ActionKind.REPLACE,
            active.drift,
            f"{reason}; adopted, so a fresh key pair of syncd's own",
            TaskKind.REPLACE,
        )
    return act(s, ActionKind.REPAIR, active.drift, reason, TaskKind.REPAIR)


def verify_due(s: Subject) -> Decision:
    """A user in this pass's verification slice is verified."""
    active = s.known.active if s.known else None
    if not s.wanted or active is None or not s.verify_due:
        return None
    if active.verified_at is not None:
        since = f"last verified {active.verified_at:%Y-%m-%d}"
    elif active.not_before is not None:
        since = f"never verified; issued {active.not_before:%Y-%m-%d}"
    else:
        since = "never verified"
    return act(
        s, ActionKind.VERIFY, ReasonCode.VERIFY_DUE, f"verification due ({since})", TaskKind.VERIFY
    )
