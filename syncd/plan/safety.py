"""Safety around the chain: an empty snapshot while users are managed is a source failure,
never "everyone left"; how many deprovisions one pass may make; the unusable entries that keep
their users' state."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from syncd.directory.base import SkippedEntry, Snapshot, SourceError
from syncd.plan.views import UserView


def deprovision_limit(max_deprovision: str, active_users: int) -> int:
    """How many users one pass may deprovision: a count, or a percentage of active users."""
    text = max_deprovision.strip()
    if text.endswith("%"):
        return math.floor(active_users * int(text[:-1]) / 100)
    return int(text)


def managed(views: Iterable[UserView]) -> list[UserView]:
    return [v for v in views if v.in_scope and (v.holds_credentials or v.open_task)]


def check_snapshot(snapshot: Snapshot, views: Sequence[UserView]) -> None:
    """An empty snapshot while users are managed is a source failure."""
    count = len(managed(views))
    if not snapshot.users and count:
        raise SourceError(
            f"the {snapshot.source} directory source returned no users while syncd manages "
            f"{count}; treating it as a source failure (nobody is deprovisioned)"
        )


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
