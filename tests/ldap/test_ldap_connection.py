"""Connecting: StartTLS and ldaps:// with the test CA, refusal of a certificate from another CA
or for another host name, the explicit opt-out, failover across servers, a refused bind, and
a server that goes away between two pages (the pass stops before planning)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

import syncd.app.passes as sync_module
from syncd.app.context import App
from syncd.config import DirectoryConfig, GoogleConfig, LdapSourceConfig, parse_config
from syncd.directory.base import SourceError
from syncd.directory.ldap import LdapSource
from syncd.state.db import Database
from syncd.state.models import Run, Task
from tests.support.slapd import free_port

from .conftest import SERVICE_DN, LdapServer

NOW = datetime(2026, 11, 30, tzinfo=UTC)
Build = Callable[..., LdapSourceConfig]


def count(config: LdapSourceConfig) -> int:
    return len(LdapSource(config).read(NOW).users)


def test_start_tls_and_ldaps_with_the_test_ca(ldap_server: LdapServer, ldap_config: Build) -> None:
    over_start_tls = count(ldap_config())
    over_ldaps = count(ldap_config(servers=[ldap_server.ldaps_url], start_tls=False))
    assert over_start_tls == over_ldaps > 60


@pytest.mark.parametrize("mode", ["start_tls", "ldaps"])
def test_a_certificate_from_another_ca_is_refused(
    ldap_server: LdapServer, ldap_config: Build, mode: str
) -> None:
    servers = [ldap_server.url] if mode == "start_tls" else [ldap_server.ldaps_url]
    config = ldap_config(servers=servers, start_tls=mode == "start_tls",
                         ca_file=str(ldap_server.other_ca_file))
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    message = str(caught.value)
    assert message.startswith(f"directory.ldap: no server could be used: servers.0 {servers[0]}: ")
    assert "TLS certificate refused" in message
    assert "\n" not in message


@pytest.mark.parametrize("mode", ["start_tls", "ldaps"])
def test_a_certificate_for_another_host_name_is_refused(
    ldap_server: LdapServer, ldap_config: Build, mode: str
) -> None:
    # The certificate names localhost only; 127.0.0.1 is the same server under another name.
    port = ldap_server.slapd.port if mode == "start_tls" else ldap_server.slapd.ldaps_port
    url = f"{'ldap' if mode == 'start_tls' else 'ldaps'}://127.0.0.1:{port}"
    config = ldap_config(servers=[url], start_tls=mode == "start_tls")
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    assert str(caught.value) == (
        f"directory.ldap: no server could be used: servers.0 {url}: "
        "TLS certificate does not match the server's host name"
    )


def test_verification_is_off_only_when_asked(ldap_server: LdapServer, ldap_config: Build) -> None:
    url = f"ldaps://127.0.0.1:{ldap_server.slapd.ldaps_port}"
    config = ldap_config(servers=[url], start_tls=False, ca_file=str(ldap_server.other_ca_file),
                         tls_verify=False)
    assert count(config) > 60


def test_failover_to_the_next_server(ldap_server: LdapServer, ldap_config: Build) -> None:
    closed = f"ldap://localhost:{free_port()}"
    wrong_name = f"ldaps://127.0.0.1:{ldap_server.slapd.ldaps_port}"
    config = ldap_config(servers=[closed, wrong_name, ldap_server.ldaps_url], start_tls=False,
                         allow_plaintext=True)
    assert count(config) > 60


def test_no_server_answers(ldap_config: Build) -> None:
    first, second = f"ldap://localhost:{free_port()}", f"ldap://localhost:{free_port()}"
    config = ldap_config(servers=[first, second], connect_timeout=2)
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    message = str(caught.value)
    assert message.startswith(f"directory.ldap: no server could be used: servers.0 {first}: ")
    assert f"; servers.1 {second}: " in message


def test_a_refused_bind_stops_at_once_without_the_password(
    ldap_server: LdapServer, ldap_config: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_TEST_LDAP_PASSWORD", "Wr0ng-Passw0rd")
    config = ldap_config(servers=[ldap_server.url, ldap_server.ldaps_url],
                         bind_password_file=None, bind_password_env="SYNCD_TEST_LDAP_PASSWORD")
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    message = str(caught.value)
    assert message == (
        f"directory.ldap.bind_dn: {ldap_server.url} refused the bind as {SERVICE_DN}: "
        "invalidCredentials"
    )
    assert "Wr0ng" not in message


def test_the_password_from_the_environment_binds(
    ldap_server: LdapServer, ldap_config: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_TEST_LDAP_PASSWORD", ldap_server.service_password)
    config = ldap_config(bind_password_file=None, bind_password_env="SYNCD_TEST_LDAP_PASSWORD")
    assert count(config) > 60


def test_the_server_going_away_between_pages(ldap_server: LdapServer, ldap_config: Build) -> None:
    def kill_after_first_page(read_so_far: int) -> None:
        ldap_server.slapd.kill()

    source = LdapSource(ldap_config(), on_page=kill_after_first_page)
    try:
        with pytest.raises(SourceError) as caught:
            source.read(NOW)
    finally:
        ldap_server.slapd.start()
    assert str(caught.value).startswith(
        f"directory.ldap.search.0: reading ou=people,dc=example,dc=org from {ldap_server.url} "
        "failed after 7 entries: "
    )


def test_a_pass_whose_read_breaks_between_pages_plans_nothing(
    ldap_server: LdapServer, ldap_config: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = ldap_config().model_dump(mode="json", exclude_none=True)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    master_key = tmp_path / "master.key"
    master_key.write_bytes(os.urandom(32))
    master_key.chmod(0o600)
    config = parse_config({"state": {"url": url},
                           "kms": {"local": {"master_key_file": str(master_key)}},
                           "directory": {"source": "ldap", "ldap": section}})
    Database.open(url, require_current=False).upgrade()
    pages: list[int] = []

    def kill_after_three_pages(read_so_far: int) -> None:
        pages.append(read_so_far)  # people: 7, 12; staff: 19, then slapd is gone
        if len(pages) == 3:
            ldap_server.slapd.kill()

    def real_source_with_hook(
        directory: DirectoryConfig, google: GoogleConfig | None = None
    ) -> LdapSource:
        assert directory.ldap is not None
        return LdapSource(directory.ldap, on_page=kill_after_three_pages)

    monkeypatch.setattr(sync_module, "open_source", real_source_with_hook)
    try:
        with pytest.raises(SourceError, match=r"^directory.ldap.search.1: reading ou=staff,"
                           r"dc=example,dc=org from ldap://localhost:\d+ failed after 7 entries"):
            sync_module.sync_pass(App(config))
    finally:
        ldap_server.slapd.start()
    database = Database.open(url, require_current=True)
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 0
        assert session.scalars(select(Run.outcome)).all() == ["source_failed"]
