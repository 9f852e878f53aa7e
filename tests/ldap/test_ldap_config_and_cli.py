"""The ``directory.ldap`` section's rules, and ``syncd directory test`` on LDAP and static."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.cli import main
from syncd.config import LdapSourceConfig, parse_config, redacted_summary
from syncd.errors import ConfigError

from .conftest import STAFF, SUFFIX

Build = Callable[..., LdapSourceConfig]
BASE: dict[str, Any] = {"servers": ["ldaps://ldap.example.org"], "search": [{"base_dn": SUFFIX}]}


def ldap_section(**keys: Any) -> dict[str, Any]:
    return {"directory": {"source": "ldap", "ldap": {**BASE, **keys}}}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"servers": ["ldap://ldap.example.org"]},
         "directory.ldap: servers.0: ldap://ldap.example.org would send the password and the "
         "directory in clear; use ldaps://, start_tls: true, or set allow_plaintext: true"),
        ({"servers": ["http://ldap.example.org"]},
         "directory.ldap.servers: servers.0: 'http://ldap.example.org' must read "
         "ldaps://host[:port]"),
        ({"servers": []}, "directory.ldap.servers: List should have at least 1 item after "
                          "validation, not 0"),
        ({"search": []}, "directory.ldap.search: List should have at least 1 item after "
                         "validation, not 0"),
        ({"bind_dn": "cn=x", "bind_password": "a", "bind_password_env": "B"},
         "directory.ldap: give only one of bind_password, bind_password_env"),
        ({"bind_password_env": "B"}, "directory.ldap: bind_dn is required with a bind password"),
        ({"search": [{"base_dn": SUFFIX, "scope": "subtree"}]},
         "directory.ldap.search.0.scope: Input should be 'base', 'one' or 'sub'"),
    ],
)
def test_refused_settings_name_the_key(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(ldap_section(**keys))
    assert str(caught.value) == message


def test_defaults_and_explicit_plaintext() -> None:
    config = parse_config(ldap_section()).directory.ldap
    assert config is not None
    assert (config.tls_verify, config.page_size, config.stable_id_attribute) == (
        True, 500, "entryUUID")
    plain = parse_config(ldap_section(servers=["ldap://x"], allow_plaintext=True)).directory.ldap
    assert plain is not None and plain.servers == ["ldap://x"]
    ad = parse_config(ldap_section(flavor="active_directory", operation_timeout="2m"))
    assert ad.directory.ldap is not None
    assert ad.directory.ldap.stable_id_attribute == "objectGUID"
    assert ad.directory.ldap.operation_timeout == 120


def test_the_inline_bind_password_is_redacted() -> None:
    config = parse_config(ldap_section(bind_dn="cn=x", bind_password="S3cret-Inline"))
    assert "S3cret-Inline" not in json.dumps(redacted_summary(config))


def _write_config(tmp_path: Path, directory: dict[str, Any]) -> Path:
    path = tmp_path / "syncd.yaml"
    state = {"url": f"sqlite:///{tmp_path / 'state.db'}"}
    path.write_text(yaml.safe_dump({"state": state, "directory": directory}))
    return path


def test_directory_test_on_ldap(
    ldap_config: Build, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = ldap_config().model_dump(mode="json", exclude_none=True)
    path = _write_config(tmp_path, {"source": "ldap", "ldap": section})
    assert main(["--config", str(path), "directory", "test", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)["directory_test"]
    assert document["source"] == "ldap"
    assert document["users_in_scope"] == 9 + STAFF + 1
    assert document["disabled"] == 1
    assert len(document["users"]) == 10
    assert {s["reason"] for s in document["skipped"]} >= {"no email"}
    assert document["read_seconds"] > 0

    assert main(["--config", str(path), "directory", "test", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("source ldap: 70 user(s) in scope (69 enabled, 1 disabled), read in ")
    assert "... and 68 more" in out
    assert f"skipped: uid=nomail,ou=people,{SUFFIX}: no email" in out

    assert main(["--config", str(path), "directory", "test", "--user", "team*@example.org",
                 "--format", "json"]) == 0
    one = json.loads(capsys.readouterr().out)["directory_test"]
    assert [u["email"] for u in one["users"]] == ["team*@example.org"]


def test_directory_test_on_an_unreachable_ldap_server(
    ldap_config: Build, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = ldap_config(servers=["ldap://localhost:9"]).model_dump(mode="json", exclude_none=True)
    path = _write_config(tmp_path, {"source": "ldap", "ldap": section})
    assert main(["--config", str(path), "directory", "test"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("syncd: directory.ldap: no server could be used: servers.0 ")
    assert error.count("\n") == 1


def test_directory_test_on_the_static_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users.csv"
    users.write_text("email,id,enabled\nA@example.org,a1,yes\nb@example.org,b1,no\n,c1,\n")
    path = _write_config(tmp_path, {"source": "static", "static": {"path": str(users)}})
    assert main(["--config", str(path), "directory", "test", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)["directory_test"]
    assert (document["source"], document["users_in_scope"], document["disabled"]) == (
        "static", 2, 1)
    assert document["users"][0] == {"email": "a@example.org", "directory_id": "a1",
                                    "enabled": True, "aliases": [], "org_unit": None,
                                    "groups": []}
    assert document["skipped"] == [
        {"where": "users.csv line 4", "reason": "no email", "email": None, "directory_id": "c1"}
    ]
    assert main(["--config", str(path), "directory", "test", "--user", "nobody@example.org"]) == 1
    assert "nobody@example.org is not in scope" in capsys.readouterr().err
