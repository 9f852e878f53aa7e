"""Skipped directory entries: the set the last read skipped, kept in the state store.

An entry is audited (``directory.entry_skipped``) and logged as a warning when it first appears
(or its reason changes), and audited (``directory.entry_resolved``) when a read no longer skips
it, fixed or gone; in between, a pass logs one summary line. ``syncd directory test`` lists
every entry skipped now. Entries are keyed by source and where (``users.csv line 7``, a DN).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.directory.base import SkippedEntry, Snapshot
from syncd.state import audit
from syncd.state.models import SkippedDirectoryEntry

log = logging.getLogger("syncd.pass")


@dataclass(frozen=True)
class SkippedChanges:
    """How the skipped entries of this read differ from those of the last recorded one."""

    total: int
    new: tuple[SkippedEntry, ...] = ()
    """First seen now, or skipped now for another reason."""
    resolved: tuple[tuple[str, str], ...] = ()
    """(where, reason) of entries skipped before and not now."""


Key = tuple[str, str]


def _current(snapshot: Snapshot) -> dict[Key, SkippedEntry]:
    current: dict[Key, SkippedEntry] = {}
    for entry in snapshot.skipped:
        current.setdefault((snapshot.source, entry.where), entry)
    return current


def _stored(session: Session) -> dict[Key, SkippedDirectoryEntry]:
    return {(row.source, row.entry): row for row in session.scalars(select(SkippedDirectoryEntry))}


def compare(session: Session, snapshot: Snapshot) -> SkippedChanges:
    """The changes, read only (``syncd plan``)."""
    return _changes(_current(snapshot), _stored(session))


def _changes(
    current: Mapping[Key, SkippedEntry], stored: Mapping[Key, SkippedDirectoryEntry]
) -> SkippedChanges:
    new = tuple(
        entry
        for key, entry in current.items()
        if key not in stored or stored[key].reason != entry.reason
    )
    resolved = tuple((row.entry, row.reason) for key, row in stored.items() if key not in current)
    return SkippedChanges(len(current), new, resolved)


def record(
    session: Session,
    snapshot: Snapshot,
    now: datetime,
    run_id: int | None,
    users: Mapping[str, int],
) -> SkippedChanges:
    """Store this read's skipped entries; audit the new and the resolved ones.

    ``users``: the id of every user the state store knew before this read, by email."""
    current, stored = _current(snapshot), _stored(session)
    changes = _changes(current, stored)
    for (source, where), entry in current.items():
        row = stored.get((source, where))
        if row is None:
            session.add(
                SkippedDirectoryEntry(
                    source=source, entry=where, reason=entry.reason, first_seen=now, last_seen=now
                )
            )
        else:
            row.last_seen = now
    for entry in changes.new:
        row = stored.get((snapshot.source, entry.where))
        previous: dict[str, Any] = {} if row is None else {"previous_reason": row.reason}
        if row is not None:
            row.reason = entry.reason
        user_id = users.get(entry.email) if entry.email else None
        audit.record(
            session,
            "directory.entry_skipped",
            user_id=user_id,
            email=entry.email if user_id is not None else None,
            run_id=run_id,
            entry=entry.where,
            reason=entry.reason,
            **previous,
        )
    for key, row in stored.items():
        if key not in current:
            audit.record(
                session,
                "directory.entry_resolved",
                run_id=run_id,
                source=row.source,
                entry=row.entry,
                reason=row.reason,
            )
            session.delete(row)
    return changes


def log_changes(changes: SkippedChanges) -> None:
    """A warning per new entry, a line per resolved one, one summary line while any remain."""
    for entry in changes.new:
        log.warning("directory entry skipped: %s: %s", entry.where, entry.reason)
    for where, reason in changes.resolved:
        log.info("directory entry no longer skipped: %s (was: %s)", where, reason)
    if changes.total:
        log.log(
            logging.WARNING if changes.new else logging.INFO,
            "%d directory entries skipped (%d new); see syncd directory test",
            changes.total,
            len(changes.new),
        )
