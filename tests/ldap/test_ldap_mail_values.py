"""An entry with several email values: the address syncd uses does not depend on the order
the server stores them in, ``directory.ldap.mail_domains`` is preferred, and a look-up finds
the entry by any of its addresses and says which one syncd uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from syncd.cli import main
from syncd.config import LdapSourceConfig
from syncd.directory.ldap import LdapSource
from syncd.directory.ldap_values import choose_email

from .conftest import ALIASES_BASE, MULTI_MAILS

NOW = datetime(2026, 11, 30, tzinfo=UTC)
Build = Callable[..., LdapSourceConfig]


@pytest.mark.parametrize(
    ("values", "domains", "chosen"),
    [
        (["b@x.example", "a@x.example"], [], "a@x.example"),
        (["a@x.example", "b@x.example"], [], "a@x.example"),
        (["B@x.example", "a@y.example"], [], "a@y.example"),
        (["a@x.example", "z@corp.example"], ["corp.example"], "z@corp.example"),
        (["a@x.example", "z@corp.example", "y@Legacy.example"],
         ["LEGACY.example", "corp.example"], "y@Legacy.example"),
        (["a@x.example", "b@x.example"], ["corp.example"], "a@x.example"),
        (["0 not an address", "z@x.example"], [], "z@x.example"),
        (["not an address", " "], [], "not an address"),
        ([" ", ""], [], None),
        ([], [], None),
    ],
)
def test_the_address_used_is_chosen_by_a_fixed_rule(
    values: list[str], domains: list[str], chosen: str | None
) -> None:
    assert choose_email(values, domains) == chosen
    assert choose_email(list(reversed(values)), domains) == chosen


def test_the_lowest_address_whatever_the_server_order(ldap_config: Build) -> None:
    source = LdapSource(ldap_config(search=[{"base_dn": ALIASES_BASE}]))
    assert MULTI_MAILS[0] == "multi.z@example.org"  # what the server returns first
    assert [u.email for u in source.read(NOW).users] == ["a.multi@example.org"]


def test_mail_domains_are_preferred(ldap_config: Build) -> None:
    config = ldap_config(search=[{"base_dn": ALIASES_BASE}], mail_domains=["other.example"])
    assert [u.email for u in LdapSource(config).read(NOW).users] == ["multi@other.example"]


@pytest.mark.parametrize("address", [m for m in MULTI_MAILS if "@" in m])
def test_a_lookup_finds_the_entry_by_any_address(ldap_config: Build, address: str) -> None:
    source = LdapSource(ldap_config(search=[{"base_dn": ALIASES_BASE}]))
    assert [u.email for u in source.lookup(address, NOW).users] == ["a.multi@example.org"]


def test_directory_test_names_the_address_used(
    ldap_config: Build, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = ldap_config(search=[{"base_dn": ALIASES_BASE}]).model_dump(
        mode="json", exclude_none=True)
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump({"state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                                    "directory": {"source": "ldap", "ldap": section}}))
    assert main(["--config", str(path), "directory", "test", "--user",
                 "Multi.Z@example.org"]) == 0
    out = capsys.readouterr().out
    assert "1 user(s) in scope" in out
    assert "multi.z@example.org is another address of this entry: syncd uses " \
        "a.multi@example.org" in out
    assert main(["--config", str(path), "directory", "test", "--user", "a.multi@example.org",
                 "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)["directory_test"]
    assert record["address_used"] == "a.multi@example.org"
    assert [u["email"] for u in record["users"]] == ["a.multi@example.org"]
