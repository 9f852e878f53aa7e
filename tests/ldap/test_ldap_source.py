"""The ldap source against the session's real slapd: search rules, paging, groups (direct,
nested, a loop), disabled accounts, unicode names, escaped DNs,
and emails that need RFC 4515 escaping in a filter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from syncd.config import LdapSourceConfig
from syncd.directory.base import SourceError
from syncd.directory.ldap import LdapSource

from .conftest import JOHN_DN, JURGEN_DN, STAFF, SUFFIX

NOW = datetime(2026, 11, 30, tzinfo=UTC)
Build = Callable[..., LdapSourceConfig]
PEOPLE = {
    "alice@example.org", "bob@example.org", "erin@example.org", "zoe@example.org",
    "john.smith@example.org", "team*@example.org", "team-a@example.org", "team-b@example.org",
    "o(hara)\\x@example.org",
}
STAFF_EMAILS = {f"s{n:03d}@example.org" for n in range(STAFF)}


def emails(config: LdapSourceConfig) -> set[str]:
    return {user.email for user in LdapSource(config).read(NOW).users}


def test_paging_reads_every_entry_in_many_pages(ldap_config: Build) -> None:
    pages: list[int] = []
    source = LdapSource(ldap_config(), on_page=pages.append)
    snapshot = source.read(NOW)
    assert {u.email for u in snapshot.users} == PEOPLE | STAFF_EMAILS | {"carl@example.org"}
    assert len(pages) > STAFF // 7  # page size 7: many pages
    assert pages == sorted(pages)


def test_search_rules_scopes_and_overlap(ldap_config: Build) -> None:
    rules = [
        {"base_dn": f"ou=contractors,{SUFFIX}", "scope": "one"},
        {"base_dn": f"ou=contractors,{SUFFIX}", "scope": "sub", "filter": "(uid=old)"},
        {"base_dn": f"uid=alice,ou=people,{SUFFIX}", "scope": "base"},
        {"base_dn": f"ou=people,{SUFFIX}", "filter": "(|(uid=alice)(uid=erin))"},
    ]
    snapshot = LdapSource(ldap_config(search=rules)).read(NOW)
    assert sorted(u.email for u in snapshot.users) == [
        "alice@example.org", "carl@example.org", "erin@example.org", "old@example.org"]
    assert snapshot.skipped == ()  # alice, found by two rules, is one entry, not a duplicate
    only_one_level = emails(ldap_config(search=[rules[0]]))
    assert only_one_level == {"carl@example.org"}


def test_ids_are_entry_uuids_and_bad_entries_are_skipped_by_dn(ldap_config: Build) -> None:
    snapshot = LdapSource(ldap_config()).read(NOW)
    ids = {u.directory_id for u in snapshot.users}
    assert len(ids) == len(snapshot.users)
    assert all(len(i) == 36 and i.count("-") == 4 and i == i.lower() for i in ids)
    alice = snapshot.by_email()["alice@example.org"]  # mail was Alice@Example.ORG
    assert alice.enabled
    reasons = {s.where: s.reason for s in snapshot.skipped}
    assert reasons == {
        JURGEN_DN: "invalid email 'not an address'",
        f"uid=nomail,ou=people,{SUFFIX}": "no email",
        f"uid=alice2,ou=people,{SUFFIX}":
            f"duplicate email alice@example.org (first at uid=alice,ou=people,{SUFFIX})",
    }


def test_unicode_and_escaped_dns_come_back_as_text(ldap_config: Build) -> None:
    rule = {"base_dn": f"ou=people,{SUFFIX}", "filter": "(|(uid=jurgen)(uid=jsmith))"}
    snapshot = LdapSource(ldap_config(search=[rule])).read(NOW)
    assert [u.email for u in snapshot.users] == ["john.smith@example.org"]
    assert [s.where for s in snapshot.skipped] == [JURGEN_DN]  # cn=Jürgen Groß,...


def test_disabled_by_attribute_value_or_by_presence(ldap_config: Build) -> None:
    by_value = LdapSource(ldap_config()).read(NOW).by_email()
    assert not by_value["bob@example.org"].enabled  # employeeType: Disabled (any case)
    assert by_value["erin@example.org"].enabled  # employeeType: Staff
    by_presence = LdapSource(ldap_config(disabled_values=[])).read(NOW).by_email()
    assert not by_presence["bob@example.org"].enabled
    assert not by_presence["erin@example.org"].enabled
    assert by_presence["alice@example.org"].enabled
    nothing = LdapSource(ldap_config(disabled_attribute=None)).read(NOW).by_email()
    assert nothing["bob@example.org"].enabled


def test_groups_nested_with_a_loop(ldap_config: Build) -> None:
    cse = {"dn": f"cn=cse,ou=groups,{SUFFIX}"}
    # cse -> alice, John (member spelled cn=Smith\2C John,ou=People), eng
    # eng -> Zoë (spelled CN=Zoë Łukasiewicz, ou=people, ...), platform
    # platform -> s001, cse (a loop), a DN that does not exist
    assert emails(ldap_config(groups=[cse])) == {
        "alice@example.org", "john.smith@example.org", "zoe@example.org", "s001@example.org"}
    direct = {"dn": f"cn=cse,ou=groups,{SUFFIX}", "nested": False}
    assert emails(ldap_config(groups=[direct])) == {"alice@example.org", "john.smith@example.org"}


def test_several_groups_and_a_direct_only_group(ldap_config: Build) -> None:
    groups = [{"dn": f"cn=direct,ou=groups,{SUFFIX}", "nested": False},
              {"dn": f"cn=platform,ou=groups,{SUFFIX}", "nested": False}]
    # direct -> bob (disabled) and eng (a group, not followed); platform -> s001
    snapshot = LdapSource(ldap_config(groups=groups)).read(NOW)
    assert {(u.email, u.enabled) for u in snapshot.users} == {
        ("bob@example.org", False), ("s001@example.org", True)}


def test_group_members_outside_the_search_rules_are_not_in_scope(ldap_config: Build) -> None:
    staff_only = [{"base_dn": f"ou=staff,{SUFFIX}"}]
    config = ldap_config(search=staff_only, groups=[{"dn": f"cn=cse,ou=groups,{SUFFIX}"}])
    assert emails(config) == {"s001@example.org"}


def test_a_missing_group_stops_the_read(ldap_config: Build) -> None:
    config = ldap_config(groups=[{"dn": f"cn=nope,ou=groups,{SUFFIX}"}])
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    assert str(caught.value) == (
        f"directory.ldap.groups.0.dn: no such group cn=nope,ou=groups,{SUFFIX}")


def test_a_missing_base_dn_stops_the_read(ldap_config: Build) -> None:
    config = ldap_config(search=[{"base_dn": f"ou=nope,{SUFFIX}"}])
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    assert str(caught.value) == f"directory.ldap.search.0.base_dn: no such entry ou=nope,{SUFFIX}"


def test_an_invalid_filter_is_named(ldap_config: Build) -> None:
    config = ldap_config(search=[{"base_dn": SUFFIX, "filter": "(objectClass=person"}])
    with pytest.raises(SourceError, match=r"^directory.ldap.search.0.filter: invalid filter"):
        LdapSource(config).read(NOW)


def test_lookup_escapes_the_email_in_the_filter(ldap_config: Build) -> None:
    source = LdapSource(ldap_config())
    star = source.lookup("team*@example.org", NOW)  # unescaped, * would match team-a and team-b
    assert [u.email for u in star.users] == ["team*@example.org"]
    parens = source.lookup("o(hara)\\x@example.org", NOW)  # unescaped: a malformed filter
    assert [u.email for u in parens.users] == ["o(hara)\\x@example.org"]
    assert source.lookup("Alice@example.org", NOW).users[0].email == "alice@example.org"
    assert source.lookup("*", NOW).users == ()


def test_lookup_respects_groups(ldap_config: Build) -> None:
    source = LdapSource(ldap_config(groups=[{"dn": f"cn=cse,ou=groups,{SUFFIX}"}]))
    assert [u.email for u in source.lookup("john.smith@example.org", NOW).users] == [
        "john.smith@example.org"]
    assert source.lookup("erin@example.org", NOW).users == ()
    assert JOHN_DN.startswith("cn=Smith\\, John")
