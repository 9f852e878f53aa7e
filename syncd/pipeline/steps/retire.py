"""Earlier key pairs: superseded ones disabled (policy.superseded_disable_after), disabled ones
obliterated (policy.obliterate_after_days).

A RETIRE task works on no generation of its own: its steps look at the user's other key pairs
and act on those the policy makes due (the same functions as the plan's rule,
:mod:`syncd.plan.retire`, on the timestamps the state store keeps). Each is idempotent: a key
pair Gmail already shows disabled is recorded as such, an obliterate Gmail answers 404 to is
done.

- ``disable_superseded`` disables the key pair in Gmail (mail encrypted to it can no longer be
  read) and revokes its KMS key, as deprovisioning does: a disabled key pair is finished, and
  ``revoke_keys`` skips those.
- ``obliterate_disabled`` obliterates it in Gmail. Gmail refuses a key pair disabled for less
  than 30 days (the rule asks at 31 at the earliest); should Gmail still refuse, because it
  was disabled there later than syncd recorded, its disabled time restarts now, so it is asked
  again one period later instead of every pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from syncd.domain import KeyPairStatus
from syncd.google.errors import GoogleAPIError
from syncd.pipeline.steps.base import (
    UNAVAILABLE,
    KeyPairView,
    Outcome,
    Services,
    Work,
    mailbox_unavailable,
    not_found,
)
from syncd.plan.retire import disable_due, obliterate_due
from syncd.plan.views import RetiredKeyPair


def disable_superseded(work: Work, services: Services) -> Outcome:
    """Disable in Gmail the superseded key pairs due, and revoke their KMS keys."""
    now = services.clock()
    due = _due(work, disable_due, services.superseded_disable_after, now)
    if not due:
        return Outcome()
    outcome = Outcome()
    disabled: list[str] = []
    revoked: list[str] = []
    for index, kp in enumerate(due):
        if kp.gmail_key_pair_id:
            try:
                keypair = services.gmail.get_keypair(work.email, kp.gmail_key_pair_id)
                if keypair.get("enablementState") != "disabled":
                    services.gmail.disable_keypair(work.email, kp.gmail_key_pair_id)
                    disabled.append(kp.gmail_key_pair_id)
            except GoogleAPIError as error:
                if mailbox_unavailable(error):  # the rest asked again one period later
                    for later in due[index:]:
                        outcome.update(later.id, superseded_at=now)
                    outcome.audit = {**UNAVAILABLE, "disabled": disabled, "revoked": revoked}
                    return outcome
                if not not_found(error):  # gone from Gmail: nothing left to disable there
                    raise
        kms = services.holding(kp)
        located = {ref.private_key_id: ref.state for ref in kms.locate(kp.kms_label)}
        ids = {key_id for key_id, state in located.items() if state == "active"}
        if kp.kms_private_key_id and kp.kms_private_key_id not in located:
            ids.add(kp.kms_private_key_id)  # not found by its label: revoke it by its id
        for key_id in sorted(ids):
            kms.revoke(key_id, f"superseded: {work.email} generation {kp.generation}")
            revoked.append(key_id)
        outcome.update(kp.id, status=KeyPairStatus.DISABLED, disabled_at=now)
    outcome.audit = {
        "generations": [kp.generation for kp in due],
        "disabled": disabled,
        "revoked": revoked,
        "code": "superseded_disable_due",
    }
    return outcome


def obliterate_disabled(work: Work, services: Services) -> Outcome:
    """Obliterate in Gmail the disabled key pairs due."""
    now = services.clock()
    due = _due(work, obliterate_due, services.obliterate_after, now)
    if not due:
        return Outcome()
    outcome = Outcome()
    obliterated: list[str] = []
    gone: list[str] = []
    refused: dict[str, str] = {}
    for kp in due:
        if kp.gmail_key_pair_id:
            try:
                services.gmail.obliterate_keypair(work.email, kp.gmail_key_pair_id)
            except GoogleAPIError as error:
                if mailbox_unavailable(error):
                    outcome.update(kp.id, disabled_at=now)  # asked again one period later
                    refused[kp.gmail_key_pair_id] = UNAVAILABLE["gmail"]
                    continue
                if not_found(error):  # gone already (an earlier attempt, or by hand)
                    outcome.update(kp.id, status=KeyPairStatus.OBLITERATED)
                    gone.append(kp.gmail_key_pair_id)
                    continue
                if error.status != 400:
                    raise
                outcome.update(kp.id, disabled_at=now)  # asked again one period later
                refused[kp.gmail_key_pair_id] = error.google_message
                continue
            obliterated.append(kp.gmail_key_pair_id)
        outcome.update(kp.id, status=KeyPairStatus.OBLITERATED)
    detail: dict[str, Any] = {
        "generations": [kp.generation for kp in due],
        "obliterated": obliterated,
        "code": "obliterate_due",
    }
    if gone:
        detail["gone"] = gone
    if refused:
        detail["refused"] = refused
    outcome.audit = detail
    return outcome


Due = Callable[[Iterable[RetiredKeyPair], timedelta | None, datetime], list[RetiredKeyPair]]


def _due(work: Work, rule: Due, after: timedelta | None, now: datetime) -> list[KeyPairView]:
    """The work's other key pairs that ``rule`` (disable_due or obliterate_due) finds due."""
    views = {
        kp.generation: kp
        for kp in work.others
        if kp.status in (KeyPairStatus.SUPERSEDED, KeyPairStatus.DISABLED)
    }
    retired = [
        RetiredKeyPair(kp.generation, kp.status, kp.superseded_at, kp.disabled_at)
        for kp in views.values()
    ]
    return [views[kp.generation] for kp in rule(retired, after, now)]
