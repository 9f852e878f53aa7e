"""Task claims: a running task belongs to the pass that claimed it until its lease ends.

A pass claims each task it starts with its run-lock token and a lease (``pipeline.claim_timeout``
past the last checkpoint, renewed at each one). Another pass leaves a task claimed under
another token alone while the lease runs, so the external call of a process that lost the run
lock can never race with the new holder's; after the lease the task resumes from its
checkpoint. The claim of a process known to be dead (same host, pid gone) ends at once, so a
crash is resumed immediately. Pure decisions; the state store side is in pipeline.tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from syncd.domain import ReasonCode
from syncd.plan import Hold, Plan


@dataclass(frozen=True)
class Claim:
    """What a pass stamps on the tasks it runs: its token and how long a lease lasts.

    ``fenced``: the token is the run-lock token, and each checkpoint also proves it is still
    the store's. An instance of a shared group (``state.shared``) claims with its instance
    token, unfenced: there the claim on the task itself is the proof (a task taken over by
    another instance shows as no row changed: ClaimLostError).
    """

    token: int
    lease: timedelta
    fenced: bool = True

    def until(self, now: datetime) -> datetime:
        return now + self.lease


@dataclass(frozen=True)
class ForeignClaim:
    """A running task's claim as another pass left it."""

    email: str
    token: int
    lease_until: datetime
    run_id: int | None
    holder: str
    """``pid X on host Y`` of the claiming pass, or "holder unknown"."""
    holder_gone: bool
    """The claiming process is known to have exited (it ran on this host and its pid is gone)."""


def claim_holds(claim: ForeignClaim, my_token: int | None, now: datetime) -> bool:
    """True when the task must be left alone: another pass's live claim on it."""
    return claim.token != my_token and claim.lease_until > now and not claim.holder_gone


def hold_reason(claim: ForeignClaim) -> str:
    run = f"pass {claim.run_id}" if claim.run_id is not None else "another pass"
    return (
        f"its task is claimed by {run} ({claim.holder}) until "
        f"{claim.lease_until:%Y-%m-%d %H:%M:%S}Z: left alone until then, then resumed from "
        "its checkpoint"
    )


def hold_claimed(the_plan: Plan, held: Mapping[str, str]) -> Plan:
    """``the_plan`` with the actions of users in ``held`` (email -> reason) turned into holds."""
    if not held:
        return the_plan
    kept = tuple(a for a in the_plan.actions if a.email not in held)
    holds = tuple(
        Hold(a.email, held[a.email], code=ReasonCode.CLAIMED_BY_ANOTHER_PASS)
        for a in the_plan.actions
        if a.email in held
    )
    return replace(the_plan, actions=kept, held=the_plan.held + holds)
