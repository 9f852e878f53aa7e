"""A read that is not whole is a failed read: slapd's stock size limit (500, paged searches
included, for an ordinary bind DN), the limits line that lifts it, referrals (a continuation
reference, and a base DN at or below a referral object), and a whole pass through
``syncd sync --once`` that finds its read cut short and deprovisions nobody."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ldap3 import SUBTREE, Connection, Server
from sqlalchemy import select

from syncd.cli import main
from syncd.config import LdapSourceConfig
from syncd.directory.base import SourceError
from syncd.directory.ldap import LdapSource
from syncd.directory.ldap_results import read_failure
from syncd.state.db import Database
from syncd.state.models import User
from tests.pipeline.conftest import Deployment, gmail_state, sandbox_users
from tests.pipeline.conftest import deployment as deployment  # a fixture
from tests.pipeline.conftest import pipeline_ca as pipeline_ca  # a fixture
from tests.support.slapd import Slapd, ssha
from tests.support.testca import write_private_file

from .conftest import (
    BULK_DN,
    MANY,
    MANY_BASE,
    PARTNERS_BASE,
    REFERRAL_URL,
    SERVICE_DN,
    SIZE_LIMIT,
    LdapServer,
)

NOW = datetime(2026, 11, 30, tzinfo=UTC)
Build = Callable[..., LdapSourceConfig]
OPENLDAP_HINT = (
    "the bind DN may not read that many entries. OpenLDAP: add `limits dn.exact=\"{dn}\" "
    "size.prtotal=unlimited` (or size=unlimited) to the database's configuration (olcLimits), "
    "or raise its sizelimit"
)


def test_ldap3_says_nothing_when_slapd_cuts_a_search_short(ldap_server: LdapServer) -> None:
    """The premise: no exception, a result code of 4, and 500 entries that look whole."""
    bare = Connection(Server(ldap_server.slapd.url), SERVICE_DN, ldap_server.service_password,
                      auto_bind=True, raise_exceptions=True)
    bare.search(MANY_BASE, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["mail"],
                paged_size=100)
    while bare.result["result"] == 0:
        cookie = bare.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
        bare.search(MANY_BASE, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["mail"],
                    paged_size=100, paged_cookie=cookie)
    assert bare.result["description"] == "sizeLimitExceeded"
    bare.unbind()


def test_the_stock_size_limit_fails_the_read_with_the_fix_named(ldap_config: Build) -> None:
    config = ldap_config(search=[{"base_dn": MANY_BASE}], page_size=100)
    with pytest.raises(SourceError) as caught:
        LdapSource(config).read(NOW)
    assert str(caught.value) == (
        f"directory.ldap.search.0: {MANY_BASE}: the server stopped the read after {SIZE_LIMIT} "
        "entries: sizeLimitExceeded (code 4); " + OPENLDAP_HINT.format(dn=SERVICE_DN)
    )


def test_a_size_limit_on_a_later_page_fails_the_read_too(ldap_config: Build) -> None:
    """Pages of 7: the limit is met in the middle of the read, not on its first reply."""
    config = ldap_config(search=[{"base_dn": MANY_BASE, "filter": "(uid=m*)"}])
    pages: list[int] = []
    with pytest.raises(SourceError, match=r"after 500 entries: sizeLimitExceeded \(code 4\)"):
        LdapSource(config, on_page=pages.append).read(NOW)
    assert len(pages) == SIZE_LIMIT // 7  # every page before the cut was read and counted


def test_the_limits_line_for_the_bind_dn_lets_the_read_pass(ldap_config: Build) -> None:
    config = ldap_config(search=[{"base_dn": MANY_BASE}], page_size=100, bind_dn=BULK_DN)
    assert len(LdapSource(config).read(NOW).users) == MANY


def test_a_lookup_checks_the_result_code_too(ldap_config: Build) -> None:
    source = LdapSource(ldap_config(search=[{"base_dn": MANY_BASE}, {"base_dn": PARTNERS_BASE}]))
    with pytest.raises(SourceError, match=r"^directory.ldap.search.1: ou=partners,.* refers to "):
        source.lookup("pat@example.org", NOW)


@pytest.mark.parametrize(
    "base_dn",
    [PARTNERS_BASE, f"ou=remote,{PARTNERS_BASE}"],
    ids=["continuation reference", "referral result"],
)
def test_a_referral_fails_the_read_with_its_url(ldap_config: Build, base_dn: str) -> None:
    with pytest.raises(SourceError) as caught:
        LdapSource(ldap_config(search=[{"base_dn": base_dn}])).read(NOW)
    message = str(caught.value)
    assert message == (
        f"directory.ldap.search.0: {base_dn} refers to other servers, which syncd does not "
        f"follow: {REFERRAL_URL}??sub; a partial directory is never used: search the server "
        "that holds those entries, or a base DN without referrals"
    )


@pytest.mark.parametrize(
    ("code", "name", "flavor", "expected"),
    [
        (3, "timeLimitExceeded", "openldap",
         "g: the server stopped the read after 9 entries: timeLimitExceeded (code 3); raise "
         "operation_timeout, or the server's time limit for the bind DN (OpenLDAP: limits ... "
         "time=unlimited; Active Directory: MaxQueryDuration)"),
        (4, "sizeLimitExceeded", "active_directory",
         "g: the server stopped the read after 9 entries: sizeLimitExceeded (code 4); the bind "
         "DN may not read that many entries. Active Directory: page_size must not exceed the "
         "LDAP policy's MaxPageSize, and MaxResultSetSize must allow the whole result "
         "(ntdsutil, LDAP policies)"),
        (11, "adminLimitExceeded", "active_directory",
         "g: the server stopped the read after 9 entries: adminLimitExceeded (code 11); an "
         "administrative limit of the server was reached. Active Directory: page_size must not "
         "exceed the LDAP policy's MaxPageSize, and MaxResultSetSize must allow the whole "
         "result (ntdsutil, LDAP policies)"),
        (51, "busy", "openldap", "g: the server stopped the read after 9 entries: busy (code 51)"),
        (0, "success", "openldap", None),
    ],
)
def test_every_code_but_success_is_a_failed_read(
    code: int, name: str, flavor: str, expected: str | None
) -> None:
    result = {"result": code, "description": name, "message": ""}
    assert read_failure(result, [], subject="g", count=9, bind_dn="cn=s", flavor=flavor) == (
        expected)


# --- a whole pass -----------------------------------------------------------------------------


def _people_ldif(suffix: str, service_dn: str, password: str, emails: list[str]) -> str:
    entries = [
        f"dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\no: Pass\ndc: pass\n",
        f"dn: ou=people,{suffix}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {service_dn}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: syncd\n"
        f"sn: syncd\nuserPassword: {ssha(password)}\n",
    ]
    for email in emails:
        uid = email.split("@")[0]
        entries.append(f"dn: uid={uid},ou=people,{suffix}\nobjectClass: inetOrgPerson\n"
                       f"uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {email}\n")
    return "\n".join(entries) + "\n"


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)  # the store is not the point
def test_a_pass_whose_read_is_cut_short_deprovisions_nobody(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix = "dc=pass,dc=example"
    service_dn = f"cn=syncd,{suffix}"
    access = "access to attrs=userPassword by anonymous auth by * none\naccess to * by users read"
    password = secrets.token_urlsafe(12)
    password_file = tmp_path / "ldap.pass"
    write_private_file(password_file, password.encode())
    emails = sandbox_users(3)
    sync_once = ["--config", str(deployment.config_path), "sync", "--once"]
    slapd = Slapd(tmp_path / "slapd", root_password=secrets.token_urlsafe(12), suffix=suffix,
                  extra_config=access)
    with slapd:
        slapd.load(_people_ldif(suffix, service_dn, password, emails))
        slapd.start()
        deployment.update_config(directory={"source": "ldap", "ldap": {
            "servers": [slapd.url], "allow_plaintext": True, "bind_dn": service_dn,
            "bind_password_file": str(password_file), "page_size": 2,
            "search": [{"base_dn": f"ou=people,{suffix}"}]}})
        assert main(sync_once) == 0, capsys.readouterr().err
        assert all(gmail_state(deployment, email)[1] is not None for email in emails)
        writes = deployment.writes()

        # The directory's administrator lowers the limit below the three users syncd manages:
        # a read of 2 would deprovision 1 (33%, under this deployment's 40% limit).
        slapd.stop()
        slapd.configure(f"{access}\nsizelimit 2")
        slapd.start()
        capsys.readouterr()
        assert main(sync_once) == 1
    error = capsys.readouterr().err
    assert f"ou=people,{suffix}: the server stopped the read after 2 entries: sizeLimitExceeded "\
        "(code 4)" in error
    assert f'limits dn.exact="{service_dn}" size.prtotal=unlimited' in error
    assert deployment.writes() == writes  # not one Google write
    assert all(gmail_state(deployment, email)[1] is not None for email in emails)
    database = Database.open(deployment.config.state.url)
    with database.sessions() as session:
        rows = session.execute(select(User.email, User.in_scope, User.deprovisioned_at)).all()
    database.close()
    assert sorted(rows) == [(email, True, None) for email in emails]
