"""Who a directory entry is: renames (same directory id, new address) and reused addresses
(same address, another directory id).

A certificate binds an address, so a rename needs a new credential for the new address; the
old address's identity goes, while its key pair stays enabled so mail sent to the old
address stays readable, and the state store keeps one user (one history). An address given to
another person (the directory lists it under a new directory id) must never keep the old
person's key pairs: the old credential is ended and a fresh one made, under the same
deprovision limit as any other end of a credential.

:func:`pair_renames` decides which listed users are renames, once per pass: the plan and the
state store's update (``syncd.pipeline.plan_state.record_snapshot``, through
``Plan.renames``) act on the same pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from syncd.directory.base import DirectoryUser
from syncd.domain import ActionKind, ReasonCode, TaskKind
from syncd.plan.views import Decision, Subject, UserView, act


def pair_renames(
    listed: Mapping[str, DirectoryUser], known: Mapping[str, UserView]
) -> dict[str, UserView]:
    """New address -> the state store's view of the same directory id under its old address.

    A listed user is renamed when syncd does not know their address, and exactly one known
    user the snapshot does not list (in scope, holding credentials or with an open task) has
    their directory id, which no other listed newcomer has. An id several entries share on
    either side pairs nobody: each of them is then planned as what it looks like (a new user,
    a user gone). A listed address syncd already knows is never a rename target (the known
    user of that address is decided first: reused, or the same person).
    """
    newcomers = [user for email, user in listed.items() if email not in known]
    departed = [
        view
        for email, view in known.items()
        if email not in listed and (view.in_scope or view.holds_credentials or view.open_task)
    ]
    new_ids = Counter(user.directory_id for user in newcomers)
    old_ids = Counter(view.directory_id for view in departed)
    by_id = {view.directory_id: view for view in departed}
    return {
        user.email: by_id[user.directory_id]
        for user in newcomers
        if new_ids[user.directory_id] == 1 and old_ids[user.directory_id] == 1
    }


def renamed(s: Subject) -> Decision:
    """Same directory id, new address: a credential for the new address, the old identity
    deleted, the old key pair kept enabled. A renamed user with nothing to carry over (no
    credential, nothing held, no task) is not answered here: the chain provisions them."""
    if s.renamed_from is None or not s.wanted or s.known is None:
        return None
    view = s.known
    if view.active is None and not view.holds_credentials and view.open_task is None:
        return None
    return act(
        s,
        ActionKind.RENAME,
        ReasonCode.RENAMED,
        f"renamed from {s.renamed_from} (directory id {view.directory_id}): new credential "
        "for the new address, the old identity deleted, the old key pair kept enabled",
        TaskKind.RENAME,
    )


def address_reused(s: Subject) -> Decision:
    """Same address, another directory id, while the old credential is still held: the
    address now belongs to someone else, who must not inherit the old key pairs. (A new
    person listed as disabled is the deprovision rule's, earlier in the chain.)"""
    if not s.wanted or s.known is None or s.listed is None:
        return None
    old, new = s.known.directory_id, s.listed.directory_id
    if old == new or not (s.known.holds_credentials or s.known.open_task):
        return None
    return act(
        s,
        ActionKind.REASSIGN,
        ReasonCode.ADDRESS_REUSED,
        f"address now belongs to directory id {new} (was {old}): the old credential is ended "
        "(identity deleted, key pairs disabled, KMS keys revoked) and a fresh one made",
        TaskKind.REASSIGN,
    )
