"""The directory source interface and the snapshot every source returns.

A source lists the users who must have CSE: email, a stable directory id, and whether the
account is enabled. Whatever the source, entries are normalised the same way (email lower-cased
and checked, id stripped) and a bad or duplicate entry is skipped and reported, never fatal.
A source that cannot read the whole directory raises SourceError: the pass stops before
planning and nobody is deprovisioned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from syncd.errors import EXIT_FAILURES, SyncdError

# Deliberately simple: one @, a dot in the domain, no spaces or control characters.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")


class SourceError(SyncdError):
    """The directory could not be read completely; nothing may be planned from it."""

    exit_code = EXIT_FAILURES


@dataclass(frozen=True)
class DirectoryUser:
    email: str
    directory_id: str
    enabled: bool = True


@dataclass(frozen=True)
class SkippedEntry:
    where: str
    """Which entry: ``users.csv line 7``, an LDAP DN, a Google user id."""
    reason: str


@dataclass(frozen=True)
class RawEntry:
    """An entry as a source read it, before normalisation."""

    where: str
    email: object
    directory_id: object
    enabled: bool = True
    problem: str | None = None
    """Set by a source that already knows the entry is unusable."""


@dataclass(frozen=True)
class Snapshot:
    source: str
    taken_at: datetime
    users: tuple[DirectoryUser, ...]
    skipped: tuple[SkippedEntry, ...] = field(default=())

    def by_email(self) -> dict[str, DirectoryUser]:
        return {user.email: user for user in self.users}


class DirectorySource(Protocol):
    name: str

    def read(self, now: datetime) -> Snapshot:
        """Every in-scope user, or SourceError."""
        ...


def normalise_email(value: object) -> str | None:
    """The email lower-cased and stripped, or None when it is not a usable address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if _EMAIL.match(email) else None


def build_snapshot(source: str, entries: Iterable[RawEntry], now: datetime) -> Snapshot:
    """Normalise entries; skip (and report) invalid emails, missing ids and duplicates.

    The first entry with a given email or id wins; later ones are skipped.
    """
    users: list[DirectoryUser] = []
    skipped: list[SkippedEntry] = []
    seen_emails: dict[str, str] = {}
    seen_ids: dict[str, str] = {}
    for entry in entries:
        email = normalise_email(entry.email)
        directory_id = str(entry.directory_id).strip() if entry.directory_id is not None else ""
        if entry.problem:
            skipped.append(SkippedEntry(entry.where, entry.problem))
        elif not entry.email:
            skipped.append(SkippedEntry(entry.where, "no email"))
        elif email is None:
            skipped.append(SkippedEntry(entry.where, f"invalid email {entry.email!r}"))
        elif not directory_id:
            skipped.append(SkippedEntry(entry.where, f"no stable id for {email}"))
        elif email in seen_emails:
            skipped.append(
                SkippedEntry(
                    entry.where, f"duplicate email {email} (first at {seen_emails[email]})"
                )
            )
        elif directory_id in seen_ids:
            skipped.append(
                SkippedEntry(
                    entry.where, f"duplicate id {directory_id} (first at {seen_ids[directory_id]})"
                )
            )
        else:
            seen_emails[email] = entry.where
            seen_ids[directory_id] = entry.where
            users.append(DirectoryUser(email, directory_id, entry.enabled))
    return Snapshot(source, now, tuple(users), tuple(skipped))
