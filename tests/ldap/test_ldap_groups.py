"""Group membership by each group's type, against the session's slapd: groupOfUniqueNames
(with the uniqueMember UID suffix), posixGroup (memberUid names), groups of one type nested in
another, member DNs spelled as the server accepts them, membership read in bulk for a big
group with a narrow search base, and where member groups are looked for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from ldap3 import BASE, Connection, Server
from ldap3.utils.conv import escape_filter_chars

from syncd.config import LdapSourceConfig
from syncd.directory.base import SourceError
from syncd.directory.ldap import LdapSource

from .conftest import (
    GROUPS_BASE,
    JOHN_DN,
    SERVICE_DN,
    SPELLING_NFD,
    SPELLING_OID,
    SPELLING_SPACES,
    SUFFIX,
    ZOE_DN,
    LdapServer,
)

NOW = datetime(2026, 11, 30, tzinfo=UTC)
Build = Callable[..., LdapSourceConfig]


def members(config: LdapSourceConfig) -> set[str]:
    return {user.email for user in LdapSource(config).read(NOW).users}


def group(name: str, nested: bool = True) -> dict[str, Any]:
    return {"dn": f"cn={name},{GROUPS_BASE}", "nested": nested}


@pytest.mark.parametrize(
    ("spelling", "entry"),
    [(SPELLING_NFD, ZOE_DN), (SPELLING_SPACES, JOHN_DN),
     (SPELLING_OID, f"uid=erin,ou=people,{SUFFIX}")],
    ids=["unicode NFD", "doubled inner space", "attribute OID"],
)
def test_the_server_matches_each_spelling_to_its_entry(
    ldap_server: LdapServer, spelling: str, entry: str
) -> None:
    """The premise: stored as spelled, and the server's member=<entry DN> finds the group."""
    bare = Connection(Server(ldap_server.slapd.url), SERVICE_DN, ldap_server.service_password,
                      auto_bind=True)
    bare.search(f"cn=spellings,{GROUPS_BASE}", f"(member={escape_filter_chars(entry)})", BASE,
                attributes=["member"])
    assert len(bare.response) == 1
    assert spelling.encode() in bare.response[0]["raw_attributes"]["member"]
    assert spelling != entry
    bare.unbind()


def test_member_spellings_the_server_accepts_are_members(ldap_config: Build) -> None:
    assert members(ldap_config(groups=[group("spellings")])) == {
        "zoe@example.org", "john.smith@example.org", "erin@example.org"}


def test_group_of_unique_names_with_the_uid_suffix(ldap_config: Build) -> None:
    # uniqueMember: alice#'0101'B, team-a, and cn=posix (a group: not followed when direct)
    assert members(ldap_config(groups=[group("unique", nested=False)])) == {
        "alice@example.org", "team-a@example.org"}


def test_posix_group_member_names_match_the_users_uid(ldap_config: Build) -> None:
    # memberUid: s002, s003, nobody (no such uid)
    assert members(ldap_config(groups=[group("posix")])) == {
        "s002@example.org", "s003@example.org"}


def test_groups_of_one_type_nested_in_another(ldap_config: Build) -> None:
    # mixed (groupOfNames) -> s010, unique (groupOfUniqueNames) -> alice, team-a,
    # posix (posixGroup) -> s002, s003
    assert members(ldap_config(groups=[group("mixed")])) == {
        "s010@example.org", "alice@example.org", "team-a@example.org", "s002@example.org",
        "s003@example.org"}


def test_a_big_group_with_a_narrow_search_base_is_read_in_bulk(
    ldap_config: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 members outside the search base cost nothing: no look-up per member."""
    searches: list[str] = []
    real_search = Connection.search

    def counted(self: Connection, search_base: str, *args: Any, **kwargs: Any) -> Any:
        searches.append(search_base)
        return real_search(self, search_base, *args, **kwargs)

    monkeypatch.setattr(Connection, "search", counted)
    config = ldap_config(search=[{"base_dn": f"ou=staff,{SUFFIX}"}], groups=[group("big")])
    assert members(config) == {"s020@example.org"}
    # the group; the staff (60 users in pages of 7); the list of the 10 groups (pages of 7)
    assert searches == [f"cn=big,{GROUPS_BASE}", *[f"ou=staff,{SUFFIX}"] * 9, *[GROUPS_BASE] * 2]


def test_member_groups_are_looked_for_under_the_groups_suffix_by_default(
    ldap_config: Build
) -> None:
    """dc=example,dc=org holds a referral (ou=partners): the list of groups cannot be whole
    there, so the read fails and names the setting; a direct group needs no such list."""
    config = ldap_config(group_base_dns=[], groups=[group("mixed")])
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    assert str(caught.value).startswith(
        "directory.ldap.group_base_dns (default: the groups' suffix): dc=example,dc=org refers "
        "to other servers, which syncd does not follow: ")
    direct = ldap_config(group_base_dns=[], groups=[group("mixed", nested=False)])
    assert members(direct) == {"s010@example.org"}


def test_a_missing_group_base_is_named(ldap_config: Build) -> None:
    config = ldap_config(group_base_dns=[f"ou=nope,{SUFFIX}"], groups=[group("mixed")])
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    assert str(caught.value) == (
        f"directory.ldap.group_base_dns.0: no such entry ou=nope,{SUFFIX}")


def test_each_member_carries_its_parent_dn_and_the_configured_groups_listing_it(
    ldap_config: Build,
) -> None:
    """What policy.rollout_order matches: the entry's parent DN (an escaped comma is part of
    the entry's own name) and each configured group, as configured, whose (nested) membership
    lists the user."""
    from syncd.plan.rollout import matches

    cse, unique = group("cse"), group("unique", nested=False)
    users = {
        u.email: (u.org_unit, u.groups)
        for u in LdapSource(ldap_config(groups=[cse, unique])).read(NOW).users
    }
    people, staff = f"ou=people,{SUFFIX}", f"ou=staff,{SUFFIX}"
    assert users == {
        "alice@example.org": (people, (cse["dn"], unique["dn"])),
        "zoe@example.org": (people, (cse["dn"],)),
        "john.smith@example.org": (people, (cse["dn"],)),
        "s001@example.org": (staff, (cse["dn"],)),
        "team-a@example.org": (people, (unique["dn"],)),
    }
    by_email = {u.email: u for u in LdapSource(ldap_config(groups=[unique])).read(NOW).users}
    assert matches(f"OU=People, {SUFFIX}", by_email["team-a@example.org"])
    assert matches(f"CN=unique,{GROUPS_BASE}", by_email["alice@example.org"])
    assert not matches(staff, by_email["alice@example.org"])
