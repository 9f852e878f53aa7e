"""The raw-values strategy (syncd.directory.ldap_strategy) against the real slapd: entries
carry the same DNs and raw values as with ldap3's own strategy, ldap3's result handling still
runs (paged cookies, the empty-attribute filling that touches ``attributes``), and the source's
connections use it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ldap3 import NONE, SUBTREE, Connection, Server, Tls

from syncd.config import LdapSourceConfig
from syncd.directory.ldap_connect import close, connect
from syncd.directory.ldap_strategy import RawValuesStrategy, UndecodedValues, use_raw_values

from .conftest import MANY_BASE, SERVICE_DN, SUFFIX, LdapServer

Build = Callable[..., LdapSourceConfig]
Entry = tuple[str, dict[str, list[bytes]]]


def _read_all(connection: Connection, base: str, attributes: list[str]) -> list[Entry]:
    """Every entry under ``base``, paged by 7, as (dn, raw attributes with lower-cased names)."""
    entries: list[Entry] = []
    cookie: bytes | None = None
    while True:
        connection.search(base, "(objectClass=inetOrgPerson)", SUBTREE, attributes=attributes,
                          paged_size=7, paged_cookie=cookie)
        for item in connection.response or ():
            if item["type"] == "searchResEntry":
                raw = {k.lower(): list(v) for k, v in item["raw_attributes"].items()}
                entries.append((item["dn"], raw))
        control = (connection.result.get("controls") or {}).get("1.2.840.113556.1.4.319")
        cookie = control["value"]["cookie"] if control else None
        if not cookie:
            return entries


def _bound(ldap_server: LdapServer, raw_only: bool) -> Connection:
    connection = Connection(
        Server(ldap_server.url, get_info=NONE, tls=Tls(ca_certs_file=str(ldap_server.ca_file))),
        SERVICE_DN,
        ldap_server.service_password,
        raise_exceptions=True,
        read_only=True,
        check_names=False,
    )
    if raw_only:
        use_raw_values(connection)
    connection.open()
    connection.start_tls()
    connection.bind()
    return connection


def test_entries_are_the_same_as_with_ldap3s_own_strategy(ldap_server: LdapServer) -> None:
    # entryUUID differs per entry; "description" is asked for and absent from most entries,
    # so ldap3's empty-attribute filling runs on the raw values and on ``attributes``.
    attributes = ["mail", "entryUUID", "cn", "description"]
    plain = _bound(ldap_server, raw_only=False)
    raw = _bound(ldap_server, raw_only=True)
    try:
        expected = _read_all(plain, SUFFIX, attributes)
        got = _read_all(raw, SUFFIX, attributes)
    finally:
        plain.unbind()
        raw.unbind()
    assert len(expected) > 60
    assert got == expected
    assert any(values.get("description") == [] for _, values in got)  # filled in, as ldap3 does


def test_the_decoded_copy_is_left_out(ldap_server: LdapServer) -> None:
    connection = _bound(ldap_server, raw_only=True)
    try:
        connection.search(MANY_BASE, "(objectClass=inetOrgPerson)", SUBTREE,
                          attributes=["mail"], paged_size=3)
        entries = [item for item in connection.response or () if item["type"] == "searchResEntry"]
    finally:
        connection.unbind()
    assert len(entries) == 3
    for entry in entries:
        assert isinstance(entry["attributes"], UndecodedValues)
        assert entry["raw_attributes"]["MAIL"][0].endswith(b"@example.org")


def test_undecoded_values_take_what_ldap3_does_to_them() -> None:
    values: dict[str, Any] = UndecodedValues()
    values["member"] = []
    values["member"] += values["member;range=0-1499"]  # ldap3's range follow-up
    del values["member;range=0-1499"]
    del values["member"]
    assert values == {}


def test_the_source_connects_with_it(ldap_config: Build) -> None:
    endpoint = connect(ldap_config())
    try:
        assert isinstance(endpoint.connection.strategy, RawValuesStrategy)
        assert endpoint.connection.post_send_search == endpoint.connection.strategy.post_send_search
    finally:
        close(endpoint)
