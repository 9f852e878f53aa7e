"""The directory source interface and the snapshot every source returns.

A source lists the users who must have CSE: email, a stable directory id, and whether the
account is enabled. Whatever the source, entries are normalised the same way (email lower-cased
and checked, id stripped) and a bad or duplicate entry is skipped and reported, never fatal.
Values the state store cannot hold (an id over 255 characters, an email over 320, control
characters) make bad entries too, whatever the source. A skipped entry keeps whatever identity
it still has (email, id), so the plan can hold the user it names instead of taking them for
gone.

Aliases (other addresses of the user, for certificates with ``certificate.include_aliases``)
are normalised like the email; the primary address and duplicates are removed, and an alias
that is not a usable ASCII address is dropped with a warning naming the entry (the entry
itself is kept).

A source that cannot read the whole directory raises SourceError: the pass stops before
planning and nobody is deprovisioned.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from syncd.errors import EXIT_FAILURES, SyncdError

# Deliberately simple: one @, a dot in the domain, no spaces or control characters.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")

# The state store's column sizes (syncd.state.models.User): longer values cannot be stored.
MAX_EMAIL = 320
MAX_DIRECTORY_ID = 255
MAX_WHERE = 512
"""Longest ``where`` kept (an LDAP DN can be longer): clipped, never refused."""
MAX_REASON = 1000
_SHOWN = 80
"""Longest bad value quoted in a reason."""

log = logging.getLogger("syncd.directory")


class SourceError(SyncdError):
    """The directory could not be read completely; nothing may be planned from it."""

    exit_code = EXIT_FAILURES


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    email: str
    directory_id: str
    enabled: bool = True
    aliases: tuple[str, ...] = ()
    """Other addresses of the user (normalised, the primary excluded), where the source
    reads them."""
    org_unit: str | None = None
    """Where the user sits, where the source knows it: a Google ``orgUnitPath``, the parent
    DN of an LDAP entry, a static file's ``org_unit`` (for ``policy.rollout_order``)."""
    groups: tuple[str, ...] = ()
    """The groups read for scope that list the user (addresses or DNs; static: a column)."""


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    where: str
    """Which entry: ``users.csv line 7``, an LDAP DN, a Google user id."""
    reason: str
    email: str | None = None
    """The entry's email, when it is readable (normalised) despite the problem."""
    directory_id: str | None = None
    """The entry's directory id, when it is readable despite the problem."""


@dataclass(frozen=True, slots=True)
class RawEntry:
    """An entry as a source read it, before normalisation."""

    where: str
    email: object
    directory_id: object
    enabled: bool = True
    problem: str | None = None
    """Set by a source that already knows the entry is unusable."""
    aliases: tuple[object, ...] = ()
    """The user's other addresses as read (normalised by :func:`clean_aliases`)."""
    org_unit: str | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    source: str
    taken_at: datetime
    users: tuple[DirectoryUser, ...]
    skipped: tuple[SkippedEntry, ...] = field(default=())

    def by_email(self) -> dict[str, DirectoryUser]:
        return {user.email: user for user in self.users}

    def skipped_identities(self) -> tuple[frozenset[str], frozenset[str]]:
        """The emails and the directory ids that skipped entries name."""
        return (
            frozenset(entry.email for entry in self.skipped if entry.email),
            frozenset(entry.directory_id for entry in self.skipped if entry.directory_id),
        )


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


def bad_character(text: str) -> str | None:
    """The first character a state store cannot hold or a person cannot see (control
    characters, NUL included, and lone surrogates), as ``U+0000``; None when there is none."""
    if text.isprintable():  # the usual case, in C: printable text has no Cc or Cs character
        return None
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cs"):
            return f"U+{ord(char):04X}"
    return None


def shown(value: object) -> str:
    """A value quoted for a reason or a log line: repr (control characters escaped), clipped."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


def printable(text: str, limit: int) -> str:
    """``text`` with control characters escaped and clipped to ``limit`` characters: a
    ``where`` or a reason the state store, a log and a terminal can all hold."""
    if bad_character(text) is not None:
        text = "".join(
            f"\\x{ord(c):02x}" if unicodedata.category(c) in ("Cc", "Cs") else c for c in text
        )
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _email_problem(value: object) -> str | None:
    """Why the email cannot be used (None: it can)."""
    if not value:
        return "no email"
    if isinstance(value, str) and (char := bad_character(value.strip())) is not None:
        return f"email {shown(value)} contains a control character ({char})"
    email = normalise_email(value)
    if email is None:
        return f"invalid email {shown(value)}"
    if len(email) > MAX_EMAIL:
        return f"email longer than {MAX_EMAIL} characters ({len(email)}): {shown(email)}"
    return None


def _id_problem(directory_id: str, email: str) -> str | None:
    """Why the directory id cannot be used (None: it can)."""
    if not directory_id:
        return f"no stable id for {email}"
    if (char := bad_character(directory_id)) is not None:
        return (
            f"directory id {shown(directory_id)} of {email} contains a control character ({char})"
        )
    if len(directory_id) > MAX_DIRECTORY_ID:
        return (
            f"directory id of {email} longer than {MAX_DIRECTORY_ID} characters "
            f"({len(directory_id)}): {shown(directory_id)}"
        )
    return None


def clean_aliases(where: str, email: str, values: Iterable[object]) -> tuple[str, ...]:
    """The usable aliases of the entry at ``where`` whose address is ``email``: normalised,
    sorted (whatever order the server keeps them in), without the primary address and
    without duplicates. A value that is not an address a certificate can carry (invalid, not
    ASCII, too long) is dropped with a warning naming the entry."""
    kept: dict[str, None] = {}
    for value in values:
        alias = normalise_email(value)
        if alias is None or not alias.isascii() or len(alias) > MAX_EMAIL:
            log.warning(
                "directory entry %s (%s): alias %s is not a usable ASCII email address; left out",
                where,
                email,
                shown(value),
            )
            continue
        if alias != email:
            kept.setdefault(alias, None)
    return tuple(sorted(kept))


def readable_identity(entry: RawEntry) -> tuple[str | None, str | None]:
    """The (email, directory id) of an entry, each None unless it could be stored as it is."""
    email = normalise_email(entry.email)
    if email is not None and (len(email) > MAX_EMAIL or bad_character(email) is not None):
        email = None
    directory_id = str(entry.directory_id).strip() if entry.directory_id is not None else ""
    if not directory_id or len(directory_id) > MAX_DIRECTORY_ID or bad_character(directory_id):
        return email, None
    return email, directory_id


def _usual_identity(entry: RawEntry) -> tuple[str, str] | None:
    """The entry's (email, directory id) when both are text that is usable as it is (the
    usual case, checked in a few calls): what :func:`readable_identity` would return then.
    None: anything else, for readable_identity to work out."""
    email, directory_id = entry.email, entry.directory_id
    if type(email) is not str or type(directory_id) is not str:
        return None
    email = email.strip().lower()
    directory_id = directory_id.strip()
    if (
        _EMAIL.match(email)
        and len(email) <= MAX_EMAIL
        and email.isprintable()
        and directory_id
        and len(directory_id) <= MAX_DIRECTORY_ID
        and directory_id.isprintable()
    ):
        return email, directory_id
    return None


def _problem(entry: RawEntry) -> str | None:
    """Why the entry is unusable on its own (duplicates aside); None when it is usable."""
    if entry.problem:
        return entry.problem
    if (wrong := _email_problem(entry.email)) is not None:
        return wrong
    email = normalise_email(entry.email)
    assert email is not None  # _email_problem said so
    directory_id = str(entry.directory_id).strip() if entry.directory_id is not None else ""
    return _id_problem(directory_id, email)


def _shared(text: str | None) -> str | None:
    """One string object per distinct org unit or group, however many users share it (the
    snapshot of 100,000 users holds a few hundred of them)."""
    return None if text is None or not text.strip() else sys.intern(text.strip())


def build_snapshot(source: str, entries: Iterable[RawEntry], now: datetime) -> Snapshot:
    """Normalise entries; skip (and report) unusable ones, missing ids and duplicates.

    The first entry with a given email or id wins; later ones are skipped. Every skipped entry
    carries the email and id it names where they are readable.
    """
    users: list[DirectoryUser] = []
    skipped: list[SkippedEntry] = []
    seen_emails: dict[str, str] = {}
    seen_ids: dict[str, str] = {}
    shared_groups: dict[tuple[str, ...], tuple[str, ...]] = {}
    for entry in entries:
        where = entry.where
        if not (where.isprintable() and len(where) <= MAX_WHERE):
            where = printable(where, MAX_WHERE)
        email, directory_id = _usual_identity(entry) or readable_identity(entry)
        # Both readable as they are (the usual case) means both usable: skip the checks that
        # would only say why not.
        usable = entry.problem is None and email is not None and directory_id is not None
        problem = None if usable else _problem(entry)
        if problem is None and email in seen_emails:
            problem = f"duplicate email {email} (first at {seen_emails[email]})"
        elif problem is None and directory_id in seen_ids:
            problem = f"duplicate id {directory_id} (first at {seen_ids[directory_id]})"
        if problem is not None:
            skipped.append(SkippedEntry(where, printable(problem, MAX_REASON), email, directory_id))
            continue
        assert email is not None and directory_id is not None  # no problem: both usable
        seen_emails[email] = where
        seen_ids[directory_id] = where
        aliases = clean_aliases(where, email, entry.aliases) if entry.aliases else ()
        groups: tuple[str, ...] = ()
        if entry.groups:
            groups = tuple(sys.intern(g.strip()) for g in entry.groups if g.strip())
            groups = shared_groups.setdefault(groups, groups)  # one tuple per combination
        users.append(
            DirectoryUser(  # positional: 100,000 of them
                email,
                directory_id,
                entry.enabled,
                aliases,
                _shared(entry.org_unit) if entry.org_unit else None,
                groups,
            )
        )
    return Snapshot(source, now, tuple(users), tuple(skipped))
