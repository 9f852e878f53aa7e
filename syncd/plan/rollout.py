"""The rollout throttle of a first deployment: at most ``policy.max_new_per_pass`` users get
their first credential in one pass, those ``policy.rollout_order`` names first.

A first credential is a provision for a user who never had one: ``new_in_scope``, or
``no_credential`` for a user without earlier key pairs (a user listed by an earlier pass whose
provision this throttle deferred is known to the state store from then on). A user coming back
with earlier key pairs in Gmail, and every retry, resume, renewal, repair or deprovision, is
never deferred.

``max_new_per_pass`` is a count (``500``) or a percentage (``1%``) of the users the snapshot
lists in scope and enabled, rounded up, at least one; unset: no limit. The order is a list of
org units (``/Pilot``: the unit and those under it), LDAP DNs (an OU and the entries under
it), or groups (an address, or a group DN) the source read; a user matching an earlier entry
goes first, then the others, by email within one tier. The users left out are counted
(``Plan.deferred_new``), not held one by one: at 100,000 users a hold each would be 99,000
rows. Pure: applied after the chain by :func:`syncd.plan.plan`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from syncd.directory.base import DirectoryUser
from syncd.domain import ActionKind, ReasonCode
from syncd.plan.views import Action, UserView

FIRST_CREDENTIAL = (ReasonCode.NEW_IN_SCOPE, ReasonCode.NO_CREDENTIAL)


def new_limit(max_new_per_pass: str | None, eligible: int) -> int | None:
    """How many first credentials one pass makes: a count, or a percentage of ``eligible``
    (the users listed in scope and enabled) rounded up; at least one. None: no limit."""
    if max_new_per_pass is None:
        return None
    text = max_new_per_pass.strip()
    if text.endswith("%"):
        return max(math.ceil(int(text[:-1]) * eligible / 100), 1)
    return max(int(text), 1)


def first_credential(action: Action, known: UserView | None) -> bool:
    """A provision for a user who never had a credential (as far as the state store shows)."""
    if action.kind is not ActionKind.PROVISION or action.code not in FIRST_CREDENTIAL:
        return False
    return known is None or not known.retired


def _dn(text: str) -> str:
    """A DN compared as servers compare them, roughly: case and spaces around RDNs ignored."""
    return ",".join(part.strip() for part in text.lower().split(","))


def _prepared(entry: str) -> tuple[str, str]:
    """An order entry as compared: (its text lower-cased, its DN form)."""
    wanted = entry.strip().lower()
    return wanted, _dn(wanted)


def _names(prepared: tuple[str, str], user: DirectoryUser) -> bool:
    wanted, as_dn = prepared
    if any(wanted == group.lower() or as_dn == _dn(group) for group in user.groups):
        return True
    unit = user.org_unit
    if unit is None:
        return False
    if wanted.startswith("/"):
        path, mine = wanted.rstrip("/"), unit.lower().rstrip("/")
        return path == "" or mine == path or mine.startswith(path + "/")
    if "=" in wanted:
        mine = _dn(unit)
        return mine == as_dn or mine.endswith("," + as_dn)
    return False


def matches(entry: str, user: DirectoryUser) -> bool:
    """Whether one ``rollout_order`` entry names the user: their org unit or one above it (a
    ``/path`` or a DN), or one of their groups (an address or a DN)."""
    return _names(_prepared(entry), user)


def tier(user: DirectoryUser | None, order: Sequence[str]) -> int:
    """The index of the first ``order`` entry naming the user; ``len(order)`` for none."""
    return _tier(user, [_prepared(entry) for entry in order])


def _tier(user: DirectoryUser | None, prepared: Sequence[tuple[str, str]]) -> int:
    if user is not None:
        for index, entry in enumerate(prepared):
            if _names(entry, user):
                return index
    return len(prepared)


def throttle_new(
    actions: Sequence[Action],
    max_new_per_pass: str | None,
    order: Sequence[str],
    listed: Mapping[str, DirectoryUser],
    known: Mapping[str, UserView],
) -> tuple[list[Action], int]:
    """The actions with first credentials beyond the limit left out, and how many were.

    Kept: the first ``limit`` first-credential provisions by (tier, email); every other
    action is kept as it is, in the order given.
    """
    if max_new_per_pass is None:
        return list(actions), 0
    new = [a for a in actions if first_credential(a, known.get(a.email))]
    limit = new_limit(max_new_per_pass, sum(1 for user in listed.values() if user.enabled))
    assert limit is not None
    if len(new) <= limit:
        return list(actions), 0
    prepared = [_prepared(entry) for entry in order]
    tiers: dict[tuple[str | None, tuple[str, ...]], int] = {}  # users share units and groups

    def rank(action: Action) -> tuple[int, str]:
        user = listed.get(action.email)
        if user is None or not prepared:
            return len(prepared), action.email
        where = (user.org_unit, user.groups)
        found = tiers.get(where)
        if found is None:
            found = tiers[where] = _tier(user, prepared)
        return found, action.email

    ranked = sorted(new, key=rank)
    deferred = {a.email for a in ranked[limit:]}
    kept = [a for a in actions if a.email not in deferred]  # one action per user
    return kept, len(deferred)
