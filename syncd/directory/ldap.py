"""The ``ldap`` source: users from OpenLDAP or Active Directory, read with paged searches.

Scope is the union of the search rules (base DN, scope, filter), narrowed, when groups are
configured, to members of those groups: direct members, and for a nested group the members
of its member groups too (Active Directory: the in-chain matching rule in the search filter;
elsewhere the groups' member attribute expanded here, each group read once, so loops end).

Every search is paged (RFC 2696) and the result code of every page is checked
(``ldap_results``): a size or time limit, an administrative limit or a referral is a failed
read, never a smaller directory. Values are normalised (email lower-cased by build_snapshot,
ids as text: entryUUID as it is, objectGUID in the form Windows shows). Anything that stops
the read (no server, a lost connection between pages, a limit, a referral, a missing base DN
or group) is a SourceError: the pass stops before planning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ldap3 import BASE, LEVEL, SUBTREE
from ldap3.core import exceptions as ldap_errors

from syncd.config import LdapSearchRule, LdapSourceConfig
from syncd.directory.base import RawEntry, Snapshot, SourceError, build_snapshot
from syncd.directory.ldap_connect import WHERE, LdapEndpoint, close, connect, describe
from syncd.directory.ldap_results import read_failure
from syncd.directory.ldap_values import (
    and_filters,
    choose_email,
    decode_text,
    escape_filter_value,
    group_member_filter,
    guid_string,
    normalise_dn,
    uac_disabled,
)

PAGED_RESULTS = "1.2.840.113556.1.4.319"
_SCOPES = {"base": BASE, "one": LEVEL, "sub": SUBTREE}

RawAttributes = Mapping[str, list[bytes]]


@dataclass(frozen=True)
class _Search:
    """One search: where it comes from in the config, what it reads, and its request."""

    where: str
    subject: str
    """What is read, for messages: a base DN, or ``group <dn>``."""
    base_dn: str
    scope: str
    filter: str
    attributes: list[str]
    missing: str | None
    """The message when the base DN does not exist; None: then there is nothing to read."""
PageHook = Callable[[int], None]
"""Called after each page with the number of entries read so far (progress, tests)."""


class LdapSource:
    name = "ldap"

    def __init__(self, config: LdapSourceConfig, on_page: PageHook | None = None) -> None:
        self.config = config
        self.on_page = on_page
        self._ad = config.flavor == "active_directory"
        self._id_attribute = config.stable_id_attribute
        attributes = [config.email_attribute, self._id_attribute]
        if self._ad:
            attributes.append("userAccountControl")
        if config.disabled_attribute:
            attributes.append(config.disabled_attribute)
        self.attributes = list(dict.fromkeys(attributes))
        self._disabled_values = {value.casefold() for value in config.disabled_values}

    # --- reading ---------------------------------------------------------------------------

    def read(self, now: datetime) -> Snapshot:
        """Every user in scope, or SourceError."""
        return build_snapshot(self.name, self._entries(extra_filter=""), now)

    def lookup(self, email: str, now: datetime) -> Snapshot:
        """Only the entries one of whose email values equals ``email`` (in scope, enabled or
        not). Each user carries the address syncd uses (``choose_email``), which may be
        another of the entry's values."""
        clause = f"({self.config.email_attribute}={escape_filter_value(email.strip())})"
        return build_snapshot(self.name, self._entries(extra_filter=clause), now)

    def _entries(self, extra_filter: str) -> list[RawEntry]:
        endpoint = connect(self.config)
        try:
            groups = self.config.groups
            if groups:
                self._check_groups_exist(endpoint)
            found = self._search_users(endpoint, extra_filter)
            if groups and not self._ad:
                members = self._expand_groups(endpoint, set(found))
                found = {dn: entry for dn, entry in found.items() if dn in members}
            return list(found.values())
        finally:
            close(endpoint)

    def user_filter(self, rule: LdapSearchRule, extra_filter: str = "") -> str:
        """The filter a rule is searched with: its own, the AD group clause, ``extra_filter``."""
        groups = self.config.groups
        member_clause = (
            group_member_filter([(g.dn, g.nested) for g in groups]) if groups and self._ad else ""
        )
        return and_filters(rule.filter, member_clause, extra_filter)

    def _search_users(self, endpoint: LdapEndpoint, extra_filter: str) -> dict[str, RawEntry]:
        """Entries of every search rule, keyed by normalised DN; the first rule to find one wins."""
        found: dict[str, RawEntry] = {}
        key: Callable[[str], str] = normalise_dn if self.config.groups else str.lower
        for number, rule in enumerate(self.config.search):
            where = f"{WHERE}.search.{number}"
            search_filter = self.user_filter(rule, extra_filter)
            for dn, attributes in self._paged(
                endpoint, where, rule.base_dn, _SCOPES[rule.scope], search_filter, len(found)
            ):
                found.setdefault(key(dn), self.raw_entry(dn, attributes))
        return found

    def _paged(
        self,
        endpoint: LdapEndpoint,
        where: str,
        base_dn: str,
        scope: str,
        search_filter: str,
        already: int,
    ) -> Iterator[tuple[str, RawAttributes]]:
        """Every entry of one user search, a page at a time; SourceError if the read stops early."""
        search = _Search(where, base_dn, base_dn, scope, search_filter, self.attributes,
                         missing=f"{where}.base_dn: no such entry {base_dn}")
        return self._search(endpoint, search, already, self.on_page)

    def _search(
        self,
        endpoint: LdapEndpoint,
        search: _Search,
        already: int = 0,
        on_page: PageHook | None = None,
    ) -> Iterator[tuple[str, RawAttributes]]:
        """Every entry of one search, a page at a time.

        The result code of every page is checked (ldap3 raises nothing for a size or time
        limit or a referral): anything but success, or a continuation reference, is a
        SourceError naming the code, so a read the server cut short is never taken as whole.
        """
        connection = endpoint.connection
        cookie: bytes | None = None
        count = 0
        while True:
            try:
                connection.search(
                    search.base_dn,
                    search.filter,
                    search.scope,
                    attributes=search.attributes,
                    paged_size=self.config.page_size,
                    paged_cookie=cookie,
                    time_limit=int(self.config.operation_timeout),
                )
            except ldap_errors.LDAPNoSuchObjectResult:
                if search.missing is None:
                    return
                raise SourceError(search.missing) from None
            except ldap_errors.LDAPInvalidFilterError as exc:
                raise SourceError(
                    f"{search.where}.filter: invalid filter {search.filter}: {exc}"
                ) from None
            except ldap_errors.LDAPOperationResult as exc:  # adminLimitExceeded and others
                result = {"result": exc.result, "description": exc.description,
                          "message": exc.message}
                self._fail(search, result, [], count)
                raise SourceError(f"{search.where}: {search.subject}: {describe(exc)}") from None
            except (ldap_errors.LDAPException, OSError) as exc:
                raise SourceError(
                    f"{search.where}: reading {search.subject} from {endpoint.url} failed after "
                    f"{count} entries: {describe(exc)}"
                ) from None
            references: list[str] = []
            for item in connection.response or ():
                kind = item.get("type")
                if kind == "searchResEntry":
                    count += 1
                    yield item["dn"], item["raw_attributes"]
                elif kind == "searchResRef":
                    references += item.get("uri") or []
            self._fail(search, connection.result or {}, references, count)
            if on_page is not None:
                on_page(already + count)
            control = (connection.result.get("controls") or {}).get(PAGED_RESULTS)
            cookie = control["value"]["cookie"] if control else None
            if not cookie:
                return

    def _fail(
        self, search: _Search, result: Mapping[str, Any], references: list[str], count: int
    ) -> None:
        """SourceError when this reply is not a whole, successful one."""
        problem = read_failure(
            result,
            references,
            subject=search.subject,
            count=count,
            bind_dn=self.config.bind_dn,
            flavor=self.config.flavor,
        )
        if problem is not None:
            raise SourceError(f"{search.where}: {problem}")

    # --- one entry -------------------------------------------------------------------------

    def raw_entry(self, dn: str, attributes: RawAttributes) -> RawEntry:
        """One search result as the snapshot's raw entry (a bad value becomes a problem)."""
        config = self.config
        try:
            emails = [decode_text(v, config.email_attribute)
                      for v in attributes.get(config.email_attribute) or ()]
            email = choose_email(emails, config.mail_domains)
            ids = attributes.get(self._id_attribute) or []
            directory_id = self._id(ids[0]) if ids else None
            enabled = not self._disabled(attributes)
        except ValueError as exc:
            return RawEntry(dn, None, None, problem=str(exc))
        return RawEntry(dn, email, directory_id, enabled)

    def _id(self, raw: bytes) -> str:
        if self._id_attribute.lower() == "objectguid":
            return guid_string(raw)
        return decode_text(raw, self._id_attribute).strip().lower()

    def _disabled(self, attributes: RawAttributes) -> bool:
        if self._ad:
            flags = attributes.get("userAccountControl") or []
            if flags and uac_disabled(flags[0]):
                return True
        name = self.config.disabled_attribute
        if not name:
            return False
        values = attributes.get(name) or []
        if not values:
            return False
        if not self._disabled_values:
            return True
        return any(decode_text(v, name).strip().casefold() in self._disabled_values for v in values)

    # --- groups ----------------------------------------------------------------------------

    def _read_group(self, endpoint: LdapEndpoint, dn: str, where: str) -> list[str] | None:
        """The member DNs of the group at ``dn``; None when there is no such group."""
        member = self.config.member_attribute
        search = _Search(where, f"group {dn}", dn, BASE, self.config.group_filter, [member],
                         missing=None)
        entries = list(self._search(endpoint, search))
        if not entries:
            return None
        values = entries[0][1].get(member) or []
        return [v.decode("utf-8", errors="replace") for v in values]

    def _check_groups_exist(self, endpoint: LdapEndpoint) -> None:
        for number, group in enumerate(self.config.groups):
            where = f"{WHERE}.groups.{number}.dn"
            if self._read_group(endpoint, group.dn, where) is None:
                raise SourceError(f"{where}: no such group {group.dn}")

    def _expand_groups(self, endpoint: LdapEndpoint, users: set[str]) -> set[str]:
        """Normalised DNs of the members of the configured groups (nested ones expanded).

        Each group is read once, so a loop of groups ends. A member that is neither an
        in-scope user nor a group (a dangling DN, an out-of-scope entry) is left out.
        """
        members: set[str] = set()
        seen: set[str] = set()
        pending: list[tuple[str, bool, str]] = [
            (group.dn, group.nested, f"{WHERE}.groups.{number}")
            for number, group in enumerate(self.config.groups)
        ]
        while pending:
            dn, nested, where = pending.pop()
            key = normalise_dn(dn)
            if key in seen:
                continue
            seen.add(key)
            values = self._read_group(endpoint, dn, where)
            for value in values or ():
                member = normalise_dn(value)
                if member in users:
                    members.add(member)
                elif nested and member not in seen:
                    pending.append((value, True, f"{where} (member group {value})"))
        return members
