"""The ``ldap`` source: users from OpenLDAP or Active Directory, read with paged searches.

Scope is the union of the search rules (base DN, scope, filter), narrowed, when groups are
configured, to members of those groups: direct members, and for a nested group the members
of its member groups too (Active Directory: the in-chain matching rule in the search filter;
elsewhere resolved here in bulk, by each group's type, see ``ldap_groups``: the users are
read once, the groups' DNs listed with one search, and only groups are read, each once).

Every search is paged (RFC 2696) and the result code of every page is checked
(``ldap_results``): a size or time limit, an administrative limit or a referral is a failed
read, never a smaller directory. Values are normalised (email lower-cased by build_snapshot,
ids as text: entryUUID as it is, objectGUID in the form Windows shows). Anything that stops
the read (no server, a lost connection between pages, a limit, a referral, a missing base DN
or group) is a SourceError: the pass stops before planning.

A user's org unit is its entry's parent DN; its groups, the configured ones listing it when
membership is resolved here (not on AD): ``policy.rollout_order`` matches both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ldap3 import BASE, LEVEL, NO_ATTRIBUTES, SUBTREE
from ldap3.core import exceptions as ldap_errors

from syncd.config import LdapSearchRule, LdapSourceConfig
from syncd.directory.base import RawEntry, Snapshot, SourceError, build_snapshot
from syncd.directory.ldap_connect import WHERE, LdapEndpoint, close, connect, describe
from syncd.directory.ldap_groups import (
    DN_MEMBER_ATTRIBUTES,
    UID_MEMBER_ATTRIBUTE,
    USER_NAME_ATTRIBUTE,
    GroupToExpand,
    GroupValues,
    expand_groups,
    group_values,
    value_range,
)
from syncd.directory.ldap_results import read_failure
from syncd.directory.ldap_values import (
    IN_CHAIN_RULE,
    account_expired,
    ad_partition_referral,
    alias_values,
    and_filters,
    choose_email,
    decode_text,
    directory_suffix,
    escape_filter_value,
    group_member_filter,
    guid_string,
    normalise_dn,
    parent_dn,
    primary_group_id,
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
            attributes += ["userAccountControl", "accountExpires"]
        if config.disabled_attribute:
            attributes.append(config.disabled_attribute)
        if config.aliases_attribute:
            attributes.append(config.aliases_attribute)
        self._expand_here = bool(config.groups) and not self._ad
        if self._expand_here:
            attributes.append(USER_NAME_ATTRIBUTE)  # what posixGroup memberUid values name
        self.attributes = list(dict.fromkeys(attributes))
        self._disabled_values = {value.casefold() for value in config.disabled_values}
        # Lower-cased attribute names, for the plain dict raw_entry reads an entry into.
        self._email_key, self._id_key = config.email_attribute.lower(), self._id_attribute.lower()
        self._disabled_key = (config.disabled_attribute or "").lower()
        self._aliases_key = (config.aliases_attribute or "").lower()

    # --- reading ---------------------------------------------------------------------------

    def read(self, now: datetime) -> Snapshot:
        """Every user in scope, or SourceError."""
        return build_snapshot(self.name, self._entries("", now), now)

    def lookup(self, email: str, now: datetime) -> Snapshot:
        """Only the entries one of whose email values (or aliases_attribute values) equals
        ``email`` (in scope, enabled or not). Each user carries the address syncd uses
        (``choose_email``), which may be another of the entry's values."""
        value = escape_filter_value(email.strip())
        clause = f"({self.config.email_attribute}={value})"
        if self.config.aliases_attribute:  # as itself, or as proxyAddresses' smtp:<address>
            name = self.config.aliases_attribute
            clause = f"(|{clause}({name}={value})({name}=smtp:{value}))"
        return build_snapshot(self.name, self._entries(clause, now), now)

    def _entries(self, extra_filter: str, now: datetime) -> list[RawEntry]:
        endpoint = connect(self.config)
        try:
            configured = self._read_configured_groups(endpoint) if self.config.groups else {}
            primary = self._primary_groups(endpoint, configured) if self._ad else []
            found, names = self._search_users(endpoint, extra_filter, primary, now)
            if self._expand_here:
                values = {
                    key: group_values(entry, self.config.member_attribute)
                    for key, entry in configured.items()
                }
                members = self._members(endpoint, values, set(found), names)
                found = {dn: replace(entry, groups=members[dn])
                         for dn, entry in found.items() if dn in members}
            return list(found.values())
        finally:
            close(endpoint)

    def user_filter(
        self,
        rule: LdapSearchRule,
        extra_filter: str = "",
        primary_groups: Sequence[tuple[str, int]] = (),
    ) -> str:
        """The filter a rule is searched with: its own, the AD group clause, ``extra_filter``.

        ``primary_groups`` (AD): (domain suffix, RID) of the groups whose primary members are
        members too; a RID is only meaningful in its own domain, so it applies to rules whose
        base DN is in that domain.
        """
        groups = self.config.groups
        if not (groups and self._ad):
            return and_filters(rule.filter, extra_filter)
        domain = normalise_dn(directory_suffix(rule.base_dn))
        rids = [rid for suffix, rid in primary_groups if suffix == domain]
        member_clause = group_member_filter([(g.dn, g.nested) for g in groups], rids)
        return and_filters(rule.filter, member_clause, extra_filter)

    def _search_users(
        self,
        endpoint: LdapEndpoint,
        extra_filter: str,
        primary_groups: Sequence[tuple[str, int]],
        now: datetime,
    ) -> tuple[dict[str, RawEntry], dict[str, list[str]]]:
        """Entries of every search rule, keyed by normalised DN (the first rule to find one
        wins), and, when groups are expanded here, the users' names (``uid``, case-folded)."""
        found: dict[str, RawEntry] = {}
        names: dict[str, list[str]] = {}
        key: Callable[[str], str] = normalise_dn if self.config.groups else str.lower
        for number, rule in enumerate(self.config.search):
            where = f"{WHERE}.search.{number}"
            search_filter = self.user_filter(rule, extra_filter, primary_groups)
            for dn, attributes in self._paged(
                endpoint, where, rule.base_dn, _SCOPES[rule.scope], search_filter, len(found)
            ):
                dn_key = key(dn)
                if dn_key in found:
                    continue
                found[dn_key] = self.raw_entry(dn, attributes, now)
                if self._expand_here:
                    for value in attributes.get(USER_NAME_ATTRIBUTE) or ():
                        name = value.decode("utf-8", errors="replace").strip().casefold()
                        names.setdefault(name, []).append(dn_key)
        return found, names

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
                    references += [
                        url for url in item.get("uri") or ()
                        if not (self._ad and ad_partition_referral(url))
                    ]
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

    def raw_entry(
        self, dn: str, attributes: RawAttributes, now: datetime | None = None
    ) -> RawEntry:
        """One search result as the snapshot's raw entry (a bad value becomes a problem)."""
        # Names are case-insensitive: a plain dict by lower-cased name (cheaper than ldap3's).
        values = {name.lower(): raw for name, raw in attributes.items()}
        # Each value is read on its own, so an entry with one bad attribute still names the
        # user it holds (the plan keeps that user's state instead of taking them as "left").
        email: str | None = None
        directory_id: str | None = None
        aliases: list[str] = []
        try:
            emails = [decode_text(v, self.config.email_attribute)
                      for v in values.get(self._email_key) or ()]
            email = choose_email(emails, self.config.mail_domains)
            if self._aliases_key or len(emails) > 1:
                aliases = self._aliases(values, emails, email)
        except ValueError as exc:
            problem: str | None = str(exc)
        else:
            problem = None
        try:
            ids = values.get(self._id_key)
            directory_id = self._id(ids[0]) if ids else None
            enabled = not self._disabled(values, now or datetime.now(UTC))
        except ValueError as exc:
            problem = problem or str(exc)
        if problem is not None:
            return RawEntry(dn, email, directory_id, problem=problem)
        return RawEntry(dn, email, directory_id, enabled, aliases=tuple(aliases),
                        org_unit=parent_dn(dn))

    def _aliases(self, values: RawAttributes, emails: list[str], chosen: str | None) -> list[str]:
        """The entry's aliases: ``aliases_attribute``'s addresses, or the email values
        ``choose_email`` did not choose (build_snapshot normalises them). ``values`` is keyed
        by lower-cased attribute name."""
        if not self._aliases_key:
            return [value for value in emails if value.strip() and value.strip() != chosen]
        # not UTF-8: kept garbled, so build_snapshot drops it with a warning, not the user
        return alias_values([v.decode("utf-8", errors="replace")
                             for v in values.get(self._aliases_key) or ()])

    def _id(self, raw: bytes) -> str:
        if self._id_key == "objectguid":
            return guid_string(raw)
        return decode_text(raw, self._id_attribute).strip().lower()

    def _disabled(self, values: RawAttributes, now: datetime) -> bool:
        if self._ad:  # ``values`` is keyed by lower-cased attribute name
            flags = values.get("useraccountcontrol") or []
            if flags and uac_disabled(flags[0]):
                return True
            expires = values.get("accountexpires") or []
            if expires and account_expired(expires[0], now):
                return True
        if not self._disabled_key:
            return False
        found = values.get(self._disabled_key)
        if not found:
            return False
        if not self._disabled_values:
            return True
        name = self.config.disabled_attribute or ""
        return any(decode_text(v, name).strip().casefold() in self._disabled_values for v in found)

    # --- groups ----------------------------------------------------------------------------

    def _group_attributes(self) -> list[str]:
        if self._ad:  # membership is the server's (in-chain rule), plus primary group members
            return ["objectSid", "primaryGroupToken"]
        names = [*DN_MEMBER_ATTRIBUTES, UID_MEMBER_ATTRIBUTE, self.config.member_attribute]
        return list(dict.fromkeys(names))

    def _read_group(
        self, endpoint: LdapEndpoint, dn: str, where: str
    ) -> dict[str, list[bytes]] | None:
        """The group entry at ``dn`` (its member attributes, ranges merged); None when there
        is no such entry or it does not match ``group_filter``."""
        search = _Search(where, f"group {dn}", dn, BASE, self.config.group_filter,
                         self._group_attributes(), missing=None)
        entries = list(self._search(endpoint, search))
        if not entries:
            return None
        return self._merge_ranges(endpoint, search, entries[0][1])

    def _merge_ranges(
        self, endpoint: LdapEndpoint, search: _Search, attributes: RawAttributes
    ) -> dict[str, list[bytes]]:
        """Attribute values with ranged replies (``member;range=0-1499``, as Active Directory
        sends more than 1500 values) read to the end: ``member;range=1500-*`` and so on until
        the server answers with a range ending in ``*``."""
        merged: dict[str, list[bytes]] = {}
        pending: dict[str, int] = {}
        replies = [attributes]
        while replies:
            for key, values in replies.pop().items():
                ranged = value_range(key)
                name = ranged[0] if ranged else key
                merged.setdefault(name, []).extend(values)
                if ranged and ranged[2] is not None:
                    pending[name] = ranged[2] + 1
            if pending:
                name, start = pending.popitem()
                request = f"{name};range={start}-*"
                ranged_search = replace(search, attributes=[request])
                entries = list(self._search(endpoint, ranged_search))
                reply = entries[0][1] if entries else {}
                if not any(
                    (r := value_range(k)) and r[0].lower() == name.lower() and r[1] == start
                    for k in reply
                ):
                    raise SourceError(
                        f"{search.where}: {search.subject}: the server did not answer the "
                        f"ranged read {request}; the group's members cannot be read whole"
                    )
                replies.append(reply)
        return merged

    def _read_configured_groups(self, endpoint: LdapEndpoint) -> dict[str, RawAttributes]:
        """The configured groups' entries, by normalised DN; SourceError for a missing one."""
        read: dict[str, RawAttributes] = {}
        for number, group in enumerate(self.config.groups):
            where = f"{WHERE}.groups.{number}.dn"
            entry = self._read_group(endpoint, group.dn, where)
            if entry is None:
                raise SourceError(f"{where}: no such group {group.dn}")
            read[normalise_dn(group.dn)] = entry
        return read

    def _primary_groups(
        self, endpoint: LdapEndpoint, configured: dict[str, RawAttributes]
    ) -> list[tuple[str, int]]:
        """Active Directory: (domain suffix, RID) of each configured group and, for a nested
        one, of every group nested in it (one in-chain search): a user whose primaryGroupID
        is one of these is a member, which neither memberOf nor the in-chain rule shows."""
        found: list[tuple[str, int]] = []
        for number, group in enumerate(self.config.groups):
            where = f"{WHERE}.groups.{number}"
            domain = normalise_dn(directory_suffix(group.dn))
            entries = [(group.dn, configured[normalise_dn(group.dn)])]
            if group.nested:
                nested_filter = (
                    f"(&(objectClass=group)(memberOf:{IN_CHAIN_RULE}:="
                    f"{escape_filter_value(group.dn)}))"
                )
                for base in self._group_bases(group.dn):
                    search = _Search(f"{where} (nested groups)", base, base, SUBTREE,
                                     nested_filter, ["objectSid"],
                                     missing=f"{WHERE}.group_base_dns: no such entry {base}")
                    entries += list(self._search(endpoint, search))
            for dn, attributes in entries:
                try:
                    rid = primary_group_id(attributes)
                except ValueError as exc:
                    raise SourceError(f"{where}: group {dn}: {exc}") from None
                if rid is None:
                    raise SourceError(f"{where}: group {dn}: no objectSid could be read")
                found.append((domain, rid))
        return found

    def group_base_dns(self) -> list[str]:
        """Where member groups are looked for: ``group_base_dns``, or the directory suffix of
        each configured group."""
        if self.config.group_base_dns:
            return list(self.config.group_base_dns)
        return list(dict.fromkeys(directory_suffix(group.dn) for group in self.config.groups))

    def _group_bases(self, group_dn: str) -> list[str]:
        return list(self.config.group_base_dns) or [directory_suffix(group_dn)]

    def _known_groups(self, endpoint: LdapEndpoint) -> dict[str, str]:
        """Every group under the group bases (one search, DNs only): normalised DN -> DN."""
        groups: dict[str, str] = {}
        for number, base in enumerate(self.group_base_dns()):
            where = (f"{WHERE}.group_base_dns.{number}" if self.config.group_base_dns
                     else f"{WHERE}.group_base_dns (default: the groups' suffix)")
            search = _Search(where, base, base, SUBTREE, self.config.group_filter, [NO_ATTRIBUTES],
                             missing=f"{where}: no such entry {base}")
            for dn, _ in self._search(endpoint, search):
                groups.setdefault(normalise_dn(dn), dn)
        return groups

    def _members(
        self,
        endpoint: LdapEndpoint,
        configured: Mapping[str, GroupValues],
        users: set[str],
        names: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        """Normalised DNs of the in-scope users who are members of the configured groups, each
        with those groups (their DNs as configured). Each group entry is read once, however
        many configured groups nest it."""
        nested = any(group.nested for group in self.config.groups)
        known = self._known_groups(endpoint) if nested else {}
        cache: dict[str, GroupValues | None] = dict(configured)

        def read(group: GroupToExpand) -> GroupValues | None:
            key = normalise_dn(group.dn)
            if key not in cache:
                entry = self._read_group(endpoint, group.dn, group.where)
                cache[key] = (
                    None if entry is None else group_values(entry, self.config.member_attribute)
                )
            return cache[key]

        members: dict[str, tuple[str, ...]] = {}
        for number, group in enumerate(self.config.groups):
            where = f"{WHERE}.groups.{number}"
            for dn in expand_groups(
                [GroupToExpand(group.dn, group.nested, where)], read, users, names, known
            ):
                members[dn] = (*members.get(dn, ()), group.dn)
        return members
