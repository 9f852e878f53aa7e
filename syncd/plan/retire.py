"""Earlier key pairs: superseded ones disabled after ``policy.superseded_disable_after``,
disabled ones obliterated after ``policy.obliterate_after`` (opt-in; Gmail's 30 days at least).

A renewal leaves the previous key pair enabled (SUPERSEDED): Gmail cannot decrypt with a
disabled key pair, so old mail stays readable. With ``policy.superseded_disable_after`` set, a
wanted user's key pairs superseded longer ago than that are disabled (one RETIRE task, code
``superseded_disable_due``). With ``policy.obliterate_after`` set, key pairs disabled longer ago
than that, a departed user's included, are obliterated (code ``obliterate_due``); Gmail refuses
before 30 days, so the rule never asks sooner whatever the policy says. Pure: it reads the
state store's timestamps (``RetiredKeyPair.superseded_at``, ``disabled_at``) from the view.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from syncd.domain import ActionKind, KeyPairStatus, ReasonCode, TaskKind
from syncd.plan.views import Decision, RetiredKeyPair, Subject, act, format_duration

GMAIL_OBLITERATE_AFTER = timedelta(days=30)
"""Gmail obliterates only a key pair disabled for more than this."""


def disable_due(
    retired: Iterable[RetiredKeyPair], after: timedelta | None, now: datetime
) -> list[RetiredKeyPair]:
    """The superseded key pairs to disable now: superseded at least ``after`` ago
    (``policy.superseded_disable_after``; None: never)."""
    if after is None:
        return []
    return [
        kp
        for kp in retired
        if kp.status is KeyPairStatus.SUPERSEDED
        and kp.superseded_at is not None
        and now - kp.superseded_at >= after
    ]


def obliterate_wait(policy_after: timedelta | None) -> timedelta | None:
    """How long a key pair stays disabled before it is obliterated (None: never); never less
    than Gmail's 30 days and a day's margin, whatever ``policy.obliterate_after`` says."""
    if policy_after is None:
        return None
    return max(policy_after, GMAIL_OBLITERATE_AFTER + timedelta(days=1))


def obliterate_due(
    retired: Iterable[RetiredKeyPair], policy_after: timedelta | None, now: datetime
) -> list[RetiredKeyPair]:
    """The disabled key pairs to obliterate now: disabled at least
    ``obliterate_wait(policy_after)`` ago (None: never)."""
    after = obliterate_wait(policy_after)
    if after is None:
        return []
    return [
        kp
        for kp in retired
        if kp.status is KeyPairStatus.DISABLED
        and kp.disabled_at is not None
        and now - kp.disabled_at >= after
    ]


def retire_due(s: Subject) -> Decision:
    """RETIRE when a wanted user's superseded key pairs are due to be disabled, or any user's
    (a departed one's too) disabled key pairs are due to be obliterated."""
    if s.known is None or not s.known.retired:
        return None
    retired = s.known.retired
    to_disable = disable_due(retired, s.policy.superseded_disable_after, s.now) if s.wanted else []
    if to_disable:
        after = s.policy.superseded_disable_after
        assert after is not None  # disable_due found some
        return act(
            s,
            ActionKind.RETIRE,
            ReasonCode.SUPERSEDED_DISABLE_DUE,
            f"{_generations(to_disable)} superseded "
            f"{_dates([kp.superseded_at for kp in to_disable])}, more than "
            f"{format_duration(after)} ago (policy.superseded_disable_after): disable",
            TaskKind.RETIRE,
        )
    to_obliterate = obliterate_due(retired, s.policy.obliterate_after, s.now)
    if to_obliterate:
        after = obliterate_wait(s.policy.obliterate_after)
        assert after is not None
        return act(
            s,
            ActionKind.RETIRE,
            ReasonCode.OBLITERATE_DUE,
            f"{_generations(to_obliterate)} disabled "
            f"{_dates([kp.disabled_at for kp in to_obliterate])}, more than {after.days} days "
            "ago (policy.obliterate_after_days): obliterate",
            TaskKind.RETIRE,
        )
    return None


def _generations(kps: list[RetiredKeyPair]) -> str:
    numbers = ", ".join(str(kp.generation) for kp in kps)
    return f"key pair generation{'s' if len(kps) > 1 else ''} {numbers}"


def _dates(stamps: list[datetime | None]) -> str:
    days = sorted({f"{stamp:%Y-%m-%d}" for stamp in stamps if stamp is not None})
    return "on " + ", ".join(days)
