"""The ``google`` source: users in scope from the Google Workspace Directory API.

The service account of the ``google`` section impersonates ``google.admin_subject`` with the
read-only Directory scopes only (``admin.directory.user.readonly`` and
``admin.directory.group.member.readonly``).

How the selectors of ``directory.google`` combine:

1. **Union of the positive selectors.** A user is in scope when any of them selects it:

   - ``org_units``: one ``users.list`` query ``orgUnitPath='<path>'`` per unit (Google matches
     the unit and every unit under it); with ``include_sub_units: false`` only users whose
     ``orgUnitPath`` is the unit itself are kept.
   - ``groups``: ``members.list`` with ``includeDerivedMembership=true``, so members of nested
     groups count. Entries of type GROUP are those nested groups (their users are already in
     the list). A member that is not one of the domain's users (read with one complete
     ``users.list``) is external: it is skipped, with a reason naming the group.
   - ``custom_schema_field`` (``Security.cseEnabled=true``) and ``query``: each sent to
     ``users.list`` as a query.

2. **Then the exclusions**, applied to every selected user from its own Directory record:

   - suspended (``exclude_suspended``) and archived (``exclude_archived``) users stay in the
     snapshot with ``enabled=False``: syncd deprovisions those it had provisioned and
     provisions none of them;
   - users whose mailbox is not set up (``isMailboxSetup`` false, ``exclude_without_mailbox``)
     are left out of the snapshot and listed as skipped ("mailbox not set up"): Gmail cannot
     take key pairs for them yet, and they are provisioned by the first pass after Google has
     created their mailbox.

Each user carries its ``orgUnitPath`` and the configured groups that list it (members of
nested groups included), which ``policy.rollout_order`` matches. The stable directory id is the
Google user ``id``; the user's ``aliases`` (which users.list
returns with every projection: no field mask is sent) are the addresses
``certificate.include_aliases`` puts in the certificate (``nonEditableAliases``, the addresses
of domain aliases and the test domain, are not). Every listing is read to its last page
(users 500 a page, members 200 a page); a call that still fails after the client's retries
(an HTTP error, a refused page token, no answer) raises SourceError, so the pass stops before
planning and nobody is deprovisioned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from syncd.config import GoogleConfig, GoogleSourceConfig, OrgUnitScope
from syncd.directory.base import RawEntry, Snapshot, SourceError, build_snapshot
from syncd.google.directory import GoogleDirectory
from syncd.google.errors import GoogleAPIError
from syncd.google.retry import RetryPolicy

Record = dict[str, Any]


def _quoted(value: str) -> str:
    """A users.list query value in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unit_of(user: Record) -> str:
    """The user's organisational unit path, lower-cased, without a trailing slash."""
    return (str(user.get("orgUnitPath") or "/").rstrip("/") or "/").lower()


def _where(user: Record) -> str:
    return f"Google user {user.get('id') or user.get('primaryEmail') or '?'}"


class GoogleSource:
    name = "google"

    def __init__(
        self,
        scope: GoogleSourceConfig,
        google: GoogleConfig,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.scope = scope
        self.directory = GoogleDirectory(google, retry=retry, sleep=sleep)
        self._groups_of: dict[str, list[str]] = {}
        """User id -> the configured groups that list the user (filled by each read)."""

    # --- reading ---------------------------------------------------------------------------

    def _users(self, query: str | None = None) -> list[Record]:
        return self.directory.list_users(query=query, domain=self.scope.domain)

    def _unit_users(self, unit: OrgUnitScope) -> list[Record]:
        users = self._users(f"orgUnitPath={_quoted(unit.path)}")
        if unit.include_sub_units:
            return users
        return [u for u in users if _unit_of(u) == unit.path.lower()]

    def _group_users(self, everyone: list[Record]) -> tuple[list[Record], list[RawEntry]]:
        by_id = {str(u["id"]): u for u in everyone if u.get("id")}
        by_email = {str(u.get("primaryEmail", "")).lower(): u for u in everyone}
        members: list[Record] = []
        skipped: list[RawEntry] = []
        whose = self.scope.domain or "the customer"
        for group in self.scope.groups:
            for member in self.directory.list_members(group, derived=True):
                kind = member.get("type", "USER")
                email = str(member.get("email", ""))
                if kind == "GROUP":
                    continue
                where = f"group {group} member {email or member.get('id', '?')}"
                if kind != "USER":
                    problem = f"member of type {kind} in group {group} is not a user; skipped"
                    skipped.append(RawEntry(where, email, member.get("id"), problem=problem))
                    continue
                user = by_id.get(str(member.get("id", ""))) or by_email.get(email.lower())
                if user is None:
                    problem = f"external member {email} of group {group}: not a user of {whose}"
                    skipped.append(RawEntry(where, email, member.get("id"), problem=problem))
                else:
                    members.append(user)
                    mine = self._groups_of.setdefault(str(user.get("id")), [])
                    if group not in mine:
                        mine.append(group)
        return members, skipped

    def _selected(self) -> tuple[list[Record], list[RawEntry]]:
        """The union of the positive selectors (each user once) and the skipped members."""
        chosen: list[Record] = []
        skipped: list[RawEntry] = []
        self._groups_of = {}
        for unit in self.scope.org_units:
            chosen += self._unit_users(unit)
        if self.scope.custom_schema_field:
            chosen += self._users(self.scope.custom_schema_field)
        if self.scope.query:
            chosen += self._users(self.scope.query)
        if self.scope.groups:
            members, skipped = self._group_users(self._users())
            chosen += members
        unique: dict[str, Record] = {}
        for user in chosen:
            unique.setdefault(str(user.get("id") or user.get("primaryEmail")), user)
        ordered = sorted(unique.values(), key=lambda u: str(u.get("primaryEmail", "")).lower())
        return ordered, skipped

    # --- exclusions ------------------------------------------------------------------------

    def _entry(self, user: Record) -> RawEntry:
        where, email, user_id = _where(user), user.get("primaryEmail"), user.get("id")
        if self.scope.exclude_without_mailbox and user.get("isMailboxSetup") is False:
            return RawEntry(where, email, user_id, problem=f"{email}: mailbox not set up")
        disabled = (self.scope.exclude_suspended and bool(user.get("suspended"))) or (
            self.scope.exclude_archived and bool(user.get("archived"))
        )
        aliases = user.get("aliases")
        unit = user.get("orgUnitPath")
        return RawEntry(where, email, user_id, enabled=not disabled,
                        aliases=tuple(aliases) if isinstance(aliases, list) else (),
                        org_unit=unit if isinstance(unit, str) else None,
                        groups=tuple(self._groups_of.get(str(user_id), ())))

    def entries(self) -> Iterable[RawEntry]:
        """The raw entries of a complete read; SourceError when the directory cannot be read."""
        try:
            users, skipped = self._selected()
        except GoogleAPIError as error:
            raise SourceError(f"google directory source: {error}") from None
        return [*(self._entry(user) for user in users), *skipped]

    def read(self, now: datetime) -> Snapshot:
        return build_snapshot(self.name, self.entries(), now)
