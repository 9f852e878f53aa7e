"""Aliases read from a real slapd: the email attribute's other values by default, or a
configured attribute (here proxyAddresses-style values, as Active Directory keeps them)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from syncd.config import LdapSourceConfig
from syncd.directory.ldap import LdapSource
from syncd.directory.ldap_values import alias_values

from .conftest import ALIASES_BASE, PROXY_BASE

NOW = datetime(2026, 11, 30, tzinfo=UTC)
Build = Callable[..., LdapSourceConfig]


def test_the_other_mail_values_are_the_aliases(
    ldap_config: Build, caplog: pytest.LogCaptureFixture
) -> None:
    source = LdapSource(ldap_config(search=[{"base_dn": ALIASES_BASE}]))
    with caplog.at_level(logging.WARNING, logger="syncd.directory"):
        [user] = source.read(NOW).users
    assert user.email == "a.multi@example.org"
    assert user.aliases == ("multi.z@example.org", "multi@other.example")
    [warning] = [r.getMessage() for r in caplog.records if r.name == "syncd.directory"]
    assert warning.startswith(f"directory entry uid=multi,{ALIASES_BASE} (a.multi@example.org)")
    assert "'bad value'" in warning


def test_mail_domains_decide_which_value_is_the_alias(ldap_config: Build) -> None:
    config = ldap_config(search=[{"base_dn": ALIASES_BASE}], mail_domains=["other.example"])
    [user] = LdapSource(config).read(NOW).users
    assert user.email == "multi@other.example"
    assert user.aliases == ("a.multi@example.org", "multi.z@example.org")


def test_a_configured_aliases_attribute_replaces_the_mail_values(
    ldap_config: Build, caplog: pytest.LogCaptureFixture
) -> None:
    config = ldap_config(search=[{"base_dn": PROXY_BASE}], aliases_attribute="janetMailbox")
    with caplog.at_level(logging.WARNING, logger="syncd.directory"):
        [user] = LdapSource(config).read(NOW).users
    # second@ (another mail value) is not an alias now; SMTP: (the primary) is removed;
    # X500: and sip: are other address types; the unusable smtp: value is warned about
    assert (user.email, user.aliases) == ("proxy@example.org", ("p.roxy@example.org",))
    [warning] = [r.getMessage() for r in caplog.records if r.name == "syncd.directory"]
    assert "'not an address'" in warning and f"uid=proxy,{PROXY_BASE}" in warning


def test_without_aliases_in_the_entry_there_are_none(ldap_config: Build) -> None:
    users = LdapSource(ldap_config()).read(NOW).users
    assert users and all(user.aliases == () for user in users)


@pytest.mark.parametrize(
    ("values", "addresses"),
    [
        (["SMTP:a@x.example", "smtp:b@x.example"], ["a@x.example", "b@x.example"]),
        (["X500:/o=X/cn=a", "SIP:a@x.example", "x400:c=US;a=;p=X"], []),
        (["plain@x.example", " smtp: spaced@x.example "], ["plain@x.example", "spaced@x.example"]),
        (["a:b@x.example"], []),
        (["", "smtp:"], []),
    ],
)
def test_proxy_address_types(values: list[str], addresses: list[str]) -> None:
    assert alias_values(values) == addresses


@pytest.mark.parametrize("address", ["P.Roxy@example.org", "proxy@example.org"])
def test_a_lookup_finds_the_entry_by_an_alias_of_the_aliases_attribute(
    ldap_config: Build, address: str
) -> None:
    config = ldap_config(search=[{"base_dn": PROXY_BASE}], aliases_attribute="janetMailbox")
    assert [u.email for u in LdapSource(config).lookup(address, NOW).users] == [
        "proxy@example.org"]
