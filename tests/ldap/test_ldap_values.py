"""Pure LDAP value rules: DN comparison, filter escaping, AD objectGUID, userAccountControl,
and the Active Directory in-chain group filter (AD itself cannot run here)."""

from __future__ import annotations

import uuid

import pytest

from syncd.config import parse_config
from syncd.directory.ldap import LdapSource
from syncd.directory.ldap_values import (
    and_filters,
    directory_suffix,
    escape_filter_value,
    group_member_filter,
    guid_string,
    normalise_dn,
    strip_unique_member_uid,
    uac_disabled,
)


def test_filter_values_are_escaped_per_rfc_4515() -> None:
    assert escape_filter_value("team*@example.org") == "team\\2a@example.org"
    assert escape_filter_value("o(hara)\\x@example.org") == "o\\28hara\\29\\5cx@example.org"
    assert escape_filter_value("nul\x00") == "nul\\00"


def test_and_filters() -> None:
    assert and_filters("(a=1)") == "(a=1)"
    assert and_filters("(a=1)", "", "(b=2)") == "(&(a=1)(b=2))"
    assert and_filters("", "") == ""


def test_in_chain_filter_for_nested_groups_and_memberof_for_direct() -> None:
    nested = group_member_filter([("CN=CSE (all),OU=Groups,DC=corp,DC=example", True)])
    assert nested == (
        "(memberOf:1.2.840.113556.1.4.1941:=CN=CSE \\28all\\29,OU=Groups,DC=corp,DC=example)"
    )
    both = group_member_filter([("CN=A*,DC=x", True), ("CN=Smith\\, J,DC=x", False)])
    assert both == (
        "(|(memberOf:1.2.840.113556.1.4.1941:=CN=A\\2a,DC=x)(memberOf=CN=Smith\\5c, J,DC=x))"
    )


def test_active_directory_source_puts_the_group_clause_in_every_rule_filter() -> None:
    config = parse_config({"directory": {"source": "ldap", "ldap": {
        "servers": ["ldaps://dc1.corp.example"],
        "flavor": "active_directory",
        "search": [{"base_dn": "OU=Staff,DC=corp,DC=example", "filter": "(objectClass=user)"}],
        "groups": [{"dn": "CN=CSE,OU=Groups,DC=corp,DC=example"}],
    }}}).directory.ldap
    assert config is not None
    source = LdapSource(config)
    assert source.user_filter(config.search[0]) == (
        "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=CSE,OU=Groups,DC=corp,DC=example))"
    )
    assert source.attributes == ["mail", "objectGUID", "userAccountControl", "accountExpires"]


def test_object_guid_is_shown_as_windows_shows_it() -> None:
    raw = bytes.fromhex("33221100554477668899aabbccddeeff")
    assert guid_string(raw) == "00112233-4455-6677-8899-aabbccddeeff"
    value = uuid.uuid4()
    assert guid_string(value.bytes_le) == str(value)
    with pytest.raises(ValueError, match="16 bytes"):
        guid_string(b"\x01\x02")


@pytest.mark.parametrize(
    ("flags", "disabled"),
    [(b"512", False), (b"514", True), (b"66050", True), (b"66048", False), (b"2", True)],
)
def test_user_account_control_disable_bit(flags: bytes, disabled: bool) -> None:
    assert uac_disabled(flags) is disabled


def test_user_account_control_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="userAccountControl is not a number"):
        uac_disabled(b"enabled")


def test_active_directory_entries_map_to_raw_entries() -> None:
    config = parse_config({"directory": {"source": "ldap", "ldap": {
        "servers": ["ldaps://dc1.corp.example"], "flavor": "active_directory",
        "search": [{"base_dn": "DC=corp,DC=example"}],
    }}}).directory.ldap
    assert config is not None
    source = LdapSource(config)
    guid = bytes.fromhex("33221100554477668899aabbccddeeff")
    dn = "CN=Ann,OU=Staff,DC=corp,DC=example"
    entry = source.raw_entry(dn, {"mail": [b"Ann@Corp.Example"], "objectGUID": [guid],
                                  "userAccountControl": [b"514"]})
    assert (entry.email, entry.directory_id, entry.enabled) == (
        "Ann@Corp.Example", "00112233-4455-6677-8899-aabbccddeeff", False)
    bad = source.raw_entry(dn, {"mail": [b"a@corp.example"], "objectGUID": [b"short"]})
    assert bad.problem == "objectGUID must be 16 bytes, not 5"
    assert bad.email == "a@corp.example"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("cn=Smith\\, John,ou=people,dc=example,dc=org",
         "CN=Smith\\2C John, OU=People, DC=Example, DC=org"),
        ("cn=Zoë Łukasiewicz,ou=people,dc=example,dc=org",
         "CN=ZOË ŁUKASIEWICZ,ou=people,dc=example,dc=org"),
        ("cn=Zo\\C3\\AB,dc=x", "cn=zoë,dc=x"),
        ('cn="Smith, John",dc=x', "cn=Smith\\, John,dc=x"),
        ("uid=a+cn=B,dc=x", "cn=b+uid=A,dc=x"),
        ("cn=trailing\\ ,dc=x", "cn=trailing\\20,dc=x"),
        ("cn=Zo\u00eb,dc=x", "cn=Zoe\u0308,dc=x"),  # NFC and NFD
        ("cn=\uff2a\uff4f\uff48\uff4e,dc=x", "cn=john,dc=x"),  # full-width letters (NFKC)
        ("cn=Smith\\,  John,dc=x", "cn=Smith\\, John,dc=x"),  # a doubled inner space
        ("cn=a   b c,dc=x", "cn=A B  C,dc=x"),
        ("2.5.4.3=Ann,0.9.2342.19200300.100.1.25=x", "cn=ann,dc=x"),
        ("OID.2.5.4.11=Staff,2.5.4.10=Org,2.5.4.6=DE,2.5.4.7=Bonn", "ou=staff,o=org,c=de,l=bonn"),
        ("0.9.2342.19200300.100.1.1=erin,dc=x", "UID=Erin,DC=X"),
    ],
)
def test_two_spellings_of_one_dn_normalise_alike(one: str, other: str) -> None:
    assert normalise_dn(one) == normalise_dn(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("cn=Smith\\, John,dc=x", "cn=Smith,cn=John,dc=x"),
        ("cn=a\\+b,dc=x", "cn=a+b,dc=x"),
        ("cn=trailing\\ ,dc=x", "cn=trailing,dc=x"),
        ("uid=alice,ou=people,dc=x", "uid=alice,ou=staff,dc=x"),
        ("cn=ab,dc=x", "cn=a b,dc=x"),
        ("2.5.4.4=ann,dc=x", "cn=ann,dc=x"),  # sn is not cn
    ],
)
def test_different_dns_stay_different(one: str, other: str) -> None:
    assert normalise_dn(one) != normalise_dn(other)


def test_the_unique_member_uid_is_dropped() -> None:
    assert strip_unique_member_uid("uid=a,dc=x#'0101'B") == "uid=a,dc=x"
    assert strip_unique_member_uid("uid=a,dc=x#''B") == "uid=a,dc=x"
    assert strip_unique_member_uid("cn=\\#'01'B x,dc=x") == "cn=\\#'01'B x,dc=x"


@pytest.mark.parametrize(
    ("dn", "suffix"),
    [("cn=g,ou=groups,dc=example,DC=org", "dc=example,DC=org"), ("cn=g,o=Example", "o=Example"),
     ("cn=g,ou=x,0.9.2342.19200300.100.1.25=corp", "0.9.2342.19200300.100.1.25=corp")],
)
def test_a_groups_suffix(dn: str, suffix: str) -> None:
    assert directory_suffix(dn) == suffix
