"""The configuration schema: defaults, key-path errors, secrets, relative paths, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config import (
    load_config,
    parse_config,
    parse_duration,
    read_private_file,
    read_secret,
    redacted_summary,
)
from syncd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_example_and_demo_configurations_are_valid() -> None:
    example = load_config(REPO / "config" / "example.yaml")
    assert example.state.url == "sqlite:////var/lib/syncd/state.db"
    assert example.schedule.interval == 600
    demo = load_config(REPO / "config" / "demo.yaml")
    assert demo.kms.local.master_key_file == REPO / "demo" / "master.key"


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        ({"kms": {"local": {"master_keyfile": "x"}}}, "kms.local.master_keyfile", "unknown key"),
        ({"nonsense": {}}, "nonsense", "unknown key"),
        ({"pipeline": {"workers": "many"}}, "pipeline.workers", "valid integer"),
        ({"certificate": {"key_bits": 1024}}, "certificate.key_bits", "2048"),
        ({"policy": {"max_deprovision": "lots"}}, "policy.max_deprovision", "percentage"),
        ({"policy": {"max_new_per_pass": "half"}}, "policy.max_new_per_pass", "percentage"),
        ({"schedule": {"interval": "5 fortnights"}}, "schedule.interval", "not a duration"),
        ({"policy": {"deprovision_after": "soon"}}, "policy.deprovision_after", "not a duration"),
        ({"kacls": {"uri": "ftp://x"}}, "kacls.uri", "http(s) URL"),
        ({"state": {"url": "mysql://x"}}, "state.url", "sqlite"),
        (
            {"certificate": {"subject_template": "CN={name}"}},
            "certificate.subject_template",
            "name",
        ),
        ({"kacls": {"wrapping_key": "a", "wrapping_key_env": "B"}}, "kacls", "only one of"),
        ({"state": {"url": "postgresql://u@h:99999/d"}}, "state.url", "port 99999 is not"),
        ({"state": {"url": "postgresql://u:pw@h:port/d"}}, "state.url", "is the port a number"),
        ({"directory": {"source": "ldap"}}, "directory.ldap", "required when"),
        ({"directory": {"source": "google"}}, "directory.google", "required when"),
        ({"directory": {"source": "static"}}, "directory.static", "required when"),
        (
            {"certificate": {"renew_before_days": 400, "validity_days": 30}},
            "certificate",
            "renew_before_days (400) must be shorter than validity_days (30)",
        ),
        (
            {"certificate": {"renew_before_days": 365}},
            "certificate",
            "renew_before_days (365) must be shorter than validity_days (365)",
        ),
    ],
)
def test_bad_values_name_the_key_path(data: dict[str, object], where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.where == where
    assert problem in caught.value.problem


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("state:\n  url: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(broken)
    assert caught.value.where.startswith(f"{broken}:")


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "syncd.yaml"
    path.write_text("kms:\n  local:\n    master_key_file: keys/master.key\n")
    assert load_config(path).kms.local.master_key_file == tmp_path / "etc" / "keys" / "master.key"


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("2h") == 7200
    assert parse_duration(15) == 15
    with pytest.raises(ValueError):
        parse_duration("0s")


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "kacls.key"
    key_file.write_bytes(b"from-file")
    from_file = parse_config({"kacls": {"wrapping_key_file": str(key_file)}})
    assert read_secret(from_file.kacls, "wrapping_key", "kacls") == b"from-file"

    monkeypatch.setenv("SYNCD_TEST_KEY", "from-env")
    from_env = parse_config({"kacls": {"wrapping_key_env": "SYNCD_TEST_KEY"}})
    assert read_secret(from_env.kacls, "wrapping_key", "kacls") == b"from-env"

    unset = parse_config({"kacls": {"wrapping_key_env": "SYNCD_TEST_UNSET"}})
    with pytest.raises(ConfigError, match="kacls.wrapping_key_env: environment variable"):
        read_secret(unset.kacls, "wrapping_key", "kacls")

    missing = parse_config({"kacls": {"wrapping_key_file": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="kacls.wrapping_key_file: file not found"):
        read_secret(missing.kacls, "wrapping_key", "kacls")


def test_private_file_mode_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640"):
        read_private_file(path, "kms.local.master_key_file", strict_mode=True)
    path.chmod(0o600)
    assert len(read_private_file(path, "kms.local.master_key_file", strict_mode=True)) == 32


def test_redacted_summary_hides_inline_secrets_and_url_passwords() -> None:
    config = parse_config(
        {
            "state": {"url": "postgresql+psycopg://syncd:hunter2@db.example.com/syncd"},
            "kacls": {"wrapping_key": "c2VjcmV0LWtleS1tYXRlcmlhbA=="},
            "google": {"service_account_key": '{"private_key": "x"}'},
        }
    )
    text = str(redacted_summary(config))
    assert "hunter2" not in text
    assert "c2VjcmV0" not in text
    assert '"private_key"' not in text and "'private_key'" not in text
    assert "<redacted>" in text


def test_deprovision_grace_period() -> None:
    assert parse_config({}).policy.deprovision_after == 3600
    for zero in (0, "0", "0s", "0h"):
        assert parse_config({"policy": {"deprovision_after": zero}}).policy.deprovision_after == 0
    assert parse_config({"policy": {"deprovision_after": "2h"}}).policy.deprovision_after == 7200
    assert load_config(REPO / "config" / "example.yaml").policy.deprovision_after == 3600


def test_config_check_refuses_a_renewal_window_as_long_as_the_validity(tmp_path: Path) -> None:
    """400 days' renewal window on 30-day certificates would renew every user on every pass
    (a key pair more each time): refused in one line naming both settings, exit 2."""
    from tests.support.cli import run_syncd

    config_file = tmp_path / "syncd.yaml"
    config_file.write_text("certificate:\n  validity_days: 30\n  renew_before_days: 400\n")
    done = run_syncd(["--config", str(config_file), "config", "check"])
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "syncd: certificate: renew_before_days (400) must be shorter than validity_days (30): "
        "every certificate would be due for renewal as soon as it is issued, and every pass "
        "would renew every user"
    ]
