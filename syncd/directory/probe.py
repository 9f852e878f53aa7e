"""One timed read of the directory as a pass would do it (``syncd directory test``).

A source that can fetch one user (``lookup``, the LDAP source) does so and finds the user by
any of its addresses; any other source is read whole and filtered on the normalised address,
the primary or an alias.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from syncd.directory.base import DirectorySource, DirectoryUser, Snapshot


@dataclass(frozen=True)
class DirectoryProbe:
    """What one read found: the users (in scope), the snapshot's skipped entries, the time."""

    source: str
    users: list[DirectoryUser]
    snapshot: Snapshot
    seconds: float
    wanted: str
    """The normalised address asked for (``--user``), or ``""`` for the whole directory."""

    @property
    def enabled(self) -> int:
        return sum(1 for user in self.users if user.enabled)

    @property
    def other_addresses(self) -> list[str]:
        """The addresses syncd uses for an entry found by another of its addresses."""
        if not self.wanted:
            return []
        return [user.email for user in self.users if user.email != self.wanted]


def probe_directory(
    source: DirectorySource,
    now: datetime,
    user: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DirectoryProbe:
    """Read ``source`` (only ``user`` when given) and time the read with ``clock``."""
    started = clock()
    wanted = (user or "").strip().lower()
    if user:
        lookup = getattr(source, "lookup", None)
        if lookup:
            snapshot: Snapshot = lookup(user, now)
            users = list(snapshot.users)
        else:
            snapshot = source.read(now)
            users = [entry for entry in snapshot.users
                     if entry.email == wanted or wanted in entry.aliases]
    else:
        snapshot = source.read(now)
        users = list(snapshot.users)
    return DirectoryProbe(source.name, users, snapshot, clock() - started, wanted)
