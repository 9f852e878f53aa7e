"""Configuration drift and CA rollover: credentials issued with settings that changed since
(key size, hash, subject template, CRL/AIA URLs, issuing CA, aliases) are re-issued, at most
``policy.reissue_per_pass`` a pass.

Each key pair records what its certificate was issued with (``key_pairs.profile``, the dict of
:meth:`DesiredProfile.record`); :func:`config_changed` compares it with what a certificate
issued now would carry, key by key, and asks for a renewal with the differences as its reason.
:func:`throttle` then keeps the first ``reissue_per_pass`` of those renewals (in the plan's
order: by email) and counts the others as pending, so a rollover of 100,000 users spreads over
many passes. Renewals for expiry and every other action are never throttled.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

from syncd.domain import ActionKind, ReasonCode, TaskKind
from syncd.plan.views import Action, Decision, DesiredProfile, Policy, Subject, act

ORIGINS = ("syncd", "adopted")
"""Credentials syncd re-issues when the configuration changes: made or taken over by it."""

_SHOWN_ITEMS = 2
"""Most list items named in a reason; the rest are counted (``+3 more``)."""
_SHOWN_CHARS = 48
"""Longest item quoted in a reason (a long URL is clipped)."""


def differences(recorded: Mapping[str, object], desired: Mapping[str, object]) -> list[str]:
    """What changed, one ``key old -> new`` each, in ``desired``'s key order.

    Only keys present in both are compared: a record written before a key existed (or a value
    a backfill could not recover) is not drift on that key.
    """
    found = []
    for key, wanted in desired.items():
        if key not in recorded:
            continue
        had = recorded[key]
        if _normal(had) != _normal(wanted):
            found.append(f"{key} {_shown(had)} -> {_shown(wanted)}")
    return found


def config_changed(s: Subject) -> Decision:
    """An active credential issued with settings other than the configured ones: renew it."""
    known, profile = s.known, s.policy.profile
    if not s.wanted or known is None or known.active is None or profile is None:
        return None
    active = known.active
    if active.origin not in ORIGINS or active.profile is None:
        return None
    aliases = s.listed.aliases if s.listed is not None else ()
    desired = desired_record(profile, aliases)
    if active.profile == desired:  # the usual case: nothing to compare key by key
        return None
    changed = differences(active.profile, desired)
    if not changed:
        return None
    return act(
        s,
        ActionKind.RENEW,
        ReasonCode.CONFIG_CHANGED,
        "config changed: " + "; ".join(changed),
        TaskKind.RENEW,
    )


@functools.lru_cache(maxsize=256)
def desired_record(profile: DesiredProfile, aliases: tuple[str, ...]) -> Mapping[str, object]:
    """``profile.record(aliases)``, made once per pass for the many users who share it (read
    only)."""
    return profile.record(aliases)


def reissue_limit(per_pass: str, managed: int) -> int:
    """How many configuration re-issues one pass makes: a count, or a percentage of the
    managed users rounded up; at least one."""
    text = per_pass.strip()
    if text.endswith("%"):
        return max(math.ceil(int(text[:-1]) * managed / 100), 1)
    return max(int(text), 1)


def throttle(actions: Sequence[Action], policy: Policy, managed: int) -> tuple[list[Action], int]:
    """The actions with config_changed re-issues beyond ``policy.reissue_per_pass`` left out,
    and how many were left out.

    The first ones in the order given are kept (the plan's order: by email), so successive
    passes work through the users alphabetically; nothing else is ever left out.
    """
    limit = reissue_limit(policy.reissue_per_pass, managed)
    kept: list[Action] = []
    pending = 0
    for action in actions:
        if action.code is ReasonCode.CONFIG_CHANGED:
            if limit == 0:
                pending += 1
                continue
            limit -= 1
        kept.append(action)
    return kept, pending


def _normal(value: object) -> object:
    """Lists and tuples compare alike (a record read back from JSON holds lists)."""
    return list(value) if isinstance(value, list | tuple) else value


def _shown(value: object) -> str:
    if isinstance(value, list | tuple):
        items = [_clip(str(item)) for item in value[:_SHOWN_ITEMS]]
        if len(value) > _SHOWN_ITEMS:
            items.append(f"+{len(value) - _SHOWN_ITEMS} more")
        return "[" + ", ".join(items) + "]"
    return _clip(str(value))


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
