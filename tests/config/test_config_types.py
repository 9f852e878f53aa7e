"""The configuration's types: one SecretRef for every X / X_file / X_env, one duration type,
and the tagged unions of directory.source and kms.backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.config import (
    Config,
    GoogleDirectory,
    KmipBackendKMS,
    LdapDirectory,
    LocalBackendKMS,
    NoDirectory,
    SecretRef,
    StaticDirectory,
    parse_config,
    read_secret,
    redacted_summary,
    with_backend,
)
from syncd.config.model import secret_names
from syncd.config.types import Duration, DurationOrZero
from syncd.errors import ConfigError

LDAP = {
    "servers": ["ldaps://ldap.example.com"],
    "search": [{"base_dn": "dc=example,dc=com"}],
    "bind_dn": "cn=syncd,dc=example,dc=com",
}
EMAIL = {
    "smtp_host": "smtp.example.com",
    "sender": "s@example.com",
    "recipients": ["r@example.com"],
    "username": "syncd",
}

# (section path, secret key, the settings around it) for every secret of the file
SECRETS: list[tuple[str, str, dict[str, Any]]] = [
    ("kacls", "wrapping_key", {}),
    ("google", "service_account_key", {}),
    ("kms.kmip", "token", {}),
    ("directory.ldap", "bind_password", LDAP),
    ("report.email", "password", EMAIL),
]


def _document(section: str, settings: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = dict(settings)
    for key in reversed(section.split(".")):
        document = {key: document}
    if section == "directory.ldap":
        document["directory"]["source"] = "ldap"
    if section == "kms.kmip":
        document["kms"]["backend"] = "kmip"
    return document


def _section(config: Config, path: str) -> Any:
    section: Any = config
    for key in path.split("."):
        section = getattr(section, key)
    return section


@pytest.mark.parametrize(("where", "name", "around"), SECRETS)
def test_every_secret_is_one_secret_ref(
    where: str, name: str, around: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"from-a-file")
    monkeypatch.setenv("SYNCD_TEST_SECRET", "from-a-variable")
    cases = {
        name: "in-line-secret",
        f"{name}_file": str(secret_file),
        f"{name}_env": "SYNCD_TEST_SECRET",
    }
    expected = [b"in-line-secret", b"from-a-file", b"from-a-variable"]
    for (key, value), wanted in zip(cases.items(), expected, strict=True):
        config = parse_config(_document(where, {**around, key: value}))
        section = _section(config, where)
        ref = getattr(section, name)
        assert isinstance(ref, SecretRef)
        assert ref.origin(where) == f"{where}.{key}"
        assert read_secret(section, name, where) == wanted
        assert "in-line-secret" not in repr(config)  # SecretStr
        summary = redacted_summary(config)
        assert "in-line-secret" not in str(summary)
        assert set(_section_dict(summary, where)) >= {name, f"{name}_file", f"{name}_env"}
        # model_dump gives the file's keys back: the section reads again to the same secret
        again = parse_config(_document(where, section.model_dump(exclude_none=True)))
        assert read_secret(_section(again, where), name, where) == wanted
    assert getattr(_section(parse_config(_document(where, around)), where), name) is None

    with pytest.raises(ConfigError, match=f"^{where}: give only one of {name}, {name}_file"):
        parse_config(_document(where, {**around, name: "a", f"{name}_file": "b"}))
    gone = parse_config(_document(where, {**around, f"{name}_file": str(tmp_path / "gone")}))
    with pytest.raises(ConfigError, match=f"^{where}.{name}_file: file not found: {tmp_path}"):
        read_secret(_section(gone, where), name, where)
    unset = parse_config(_document(where, {**around, f"{name}_env": "SYNCD_TEST_UNSET_VAR"}))
    with pytest.raises(
        ConfigError,
        match=f"^{where}.{name}_env: environment variable SYNCD_TEST_UNSET_VAR is not set",
    ):
        read_secret(_section(unset, where), name, where)
    with pytest.raises(ConfigError, match=f"^{where}.{name}_env: Input should be a valid string"):
        parse_config(_document(where, {**around, f"{name}_env": 5}))


def test_the_secrets_above_are_all_the_secrets() -> None:
    assert secret_names() == {name for _, name, _ in SECRETS}


def _section_dict(summary: dict[str, Any], path: str) -> dict[str, Any]:
    for key in path.split("."):
        summary = summary[key]
    return summary


def test_a_relative_secret_file_is_relative_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "kacls.key").write_bytes(b"k")
    path = tmp_path / "syncd.yaml"
    path.write_text("kacls:\n  wrapping_key_file: keys/kacls.key\n")
    config = parse_config(yaml.safe_load(path.read_text()), path)
    assert config.kacls.wrapping_key is not None
    assert config.kacls.wrapping_key.file == tmp_path / "keys" / "kacls.key"


DURATIONS = [
    ("", "state.keep_finished_tasks"),
    ("ldap", "directory.ldap.connect_timeout"),
    ("ldap", "directory.ldap.operation_timeout"),
    ("kmip", "kms.kmip.timeout"),
    ("", "google.max_retry_after"),
    ("", "google.timeout_seconds"),
    ("", "pipeline.step_time_limit"),
    ("", "pipeline.retry_initial"),
    ("", "pipeline.retry_max"),
    ("", "pipeline.claim_timeout"),
    ("", "pipeline.poll_interval"),
    ("", "policy.deprovision_after"),
    ("", "policy.verify_every"),
    ("", "policy.superseded_disable_after"),
    ("", "schedule.interval"),
    ("", "schedule.jitter"),
    ("email", "report.email.timeout"),
    ("", "daemon.stop_timeout"),
    ("", "daemon.health_max_age"),
    ("", "daemon.stall_timeout"),
    ("", "crl.validity"),
]


def test_every_duration_field_is_listed() -> None:
    """DURATIONS below names every field of the Duration types (found by walking the models)."""
    found: set[str] = set()

    def walk(model: Any, path: str) -> None:
        for name, field in model.model_fields.items():
            where = f"{path}.{name}" if path else name
            if field.metadata and any("duration" in repr(m) for m in field.metadata):
                found.add(where)
            annotation = str(field.annotation)
            if "Duration" in annotation or repr(field.annotation) in (
                repr(Duration),
                repr(DurationOrZero),
                repr(Duration | None),
            ):
                found.add(where)
            for kind in getattr(field.annotation, "__args__", (field.annotation,)):
                if isinstance(kind, type) and hasattr(kind, "model_fields"):
                    walk(kind, where)

    walk(Config, "")
    walk(LdapDirectory, "directory")
    walk(KmipBackendKMS, "kms")
    assert found == {path for _, path in DURATIONS}


@pytest.mark.parametrize(("needs", "path"), DURATIONS)
def test_every_duration_takes_every_form(needs: str, path: str) -> None:
    *section, key = path.split(".")
    around = {"ldap": LDAP, "kmip": {}, "email": EMAIL, "": {}}[needs]
    for given, seconds in [
        (90, 90),
        (1.5, 1.5),
        ("90", 90),
        ("90s", 90),
        (" 10 m ", 600),
        ("2h", 7200),
        ("1.5h", 5400),
        ("1d", 86400),
    ]:
        config = parse_config(_document(".".join(section), {**around, key: given}))
        assert getattr(_section(config, ".".join(section)), key) == seconds
    for wrong in ("5 fortnights", "-1s", "soon", [1]):
        with pytest.raises(ConfigError, match=f"^{path}: "):
            parse_config(_document(".".join(section), {**around, key: wrong}))
    zero = _document(".".join(section), {**around, key: "0s"})
    if path == "policy.deprovision_after":
        assert parse_config(zero).policy.deprovision_after == 0
    else:
        with pytest.raises(ConfigError, match=f"^{path}: must be more than zero"):
            parse_config(zero)


def test_directory_variants() -> None:
    assert isinstance(parse_config({}).directory, NoDirectory)
    assert isinstance(parse_config({"directory": {}}).directory, NoDirectory)
    assert isinstance(parse_config({"directory": {"ldap": LDAP}}).directory, NoDirectory)
    static = parse_config({"directory": {"static": {"path": "/u.yaml"}}}).directory
    assert isinstance(static, StaticDirectory) and static.static.path == Path("/u.yaml")
    ldap = parse_config(
        {"directory": {"source": "ldap", "ldap": LDAP, "static": {"path": "/u.yaml"}}}
    ).directory
    assert isinstance(ldap, LdapDirectory) and ldap.ldap.servers == LDAP["servers"]
    google = parse_config({"directory": {"source": "google", "google": {"query": "x"}}})
    assert isinstance(google.directory, GoogleDirectory)
    with pytest.raises(ConfigError, match=r"^directory\.ldap\.search: required key is missing"):
        parse_config({"directory": {"source": "ldap", "ldap": {"servers": ["ldaps://h"]}}})
    with pytest.raises(ConfigError, match=r"^directory\.source: Input should be 'static', "):
        parse_config({"directory": {"source": "nis"}})


def test_kms_variants() -> None:
    assert isinstance(parse_config({}).kms, LocalBackendKMS)
    config = parse_config({"kms": {"backend": "kmip", "kmip": {"host": "kms.example.com"}}})
    assert isinstance(config.kms, KmipBackendKMS)
    assert config.kms.kmip.host == "kms.example.com"
    local = with_backend(config.kms, "local")
    assert isinstance(local, LocalBackendKMS) and local.kmip.host == "kms.example.com"
    assert isinstance(with_backend(local, "kmip"), KmipBackendKMS)
    with pytest.raises(ConfigError) as caught:
        parse_config({"kms": {"backend": "kmip"}})
    assert str(caught.value) == (
        "kms.kmip: required when kms.backend is kmip; the section is missing"
    )
    with pytest.raises(ConfigError, match=r"^kms\.backend: Input should be 'local' or 'kmip'"):
        parse_config({"kms": {"backend": "hsm"}})
    with pytest.raises(ConfigError, match=r"^kms\.kmip\.port: "):
        parse_config({"kms": {"backend": "kmip", "kmip": {"port": 0}}})


def test_config_check_refuses_a_source_without_its_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncd.cli import main  # in process: the exit code and stderr of `syncd config check`

    path = tmp_path / "syncd.yaml"
    path.write_text(f"state:\n  url: sqlite:///{tmp_path}/s.db\ndirectory:\n  source: ldap\n")
    assert main(["--config", str(path), "config", "check"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "syncd: directory.ldap: required when directory.source is ldap; the section is missing"
    ]
