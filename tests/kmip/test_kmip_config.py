"""Bad KMIP settings are refused before any connection: one line naming the key (and the file),
ConfigError, exit 2 from ``syncd config check``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from syncd.errors import ConfigError
from syncd.kms import open_key_manager
from syncd.kms.kmip.manager import KmipKeyManager
from tests.kmip.conftest import KmipConfigFactory
from tests.kmip.server import PyKmipServer
from tests.support.cli import run_syncd


def _refusal(config: Any) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        open_key_manager(config, cast(Any, None))
    return refused.value


@pytest.mark.parametrize("setting", ["host", "client_certificate_file", "client_key_file"])
def test_required_settings_are_named(kmip_config: KmipConfigFactory, setting: str) -> None:
    error = _refusal(kmip_config(**{setting: None}))
    assert error.where == f"kms.kmip.{setting}"
    assert "required for kms.kmip.transport: binary" in str(error)


def test_binary_kmip_never_skips_server_verification(kmip_config: KmipConfigFactory) -> None:
    error = _refusal(kmip_config(verify_tls=False))
    assert error.where == "kms.kmip.verify_tls"
    assert "binary KMIP always checks the server's certificate" in str(error)


@pytest.mark.parametrize("setting", ["client_certificate_file", "client_key_file", "ca_file"])
def test_missing_files_are_named_with_their_key(
    kmip_config: KmipConfigFactory, tmp_path: Path, setting: str
) -> None:
    missing = tmp_path / "nowhere.pem"
    error = _refusal(kmip_config(**{setting: str(missing)}))
    assert error.where == f"kms.kmip.{setting}"
    assert str(error) == f"kms.kmip.{setting}: file not found: {missing}"


def test_unreadable_key_file(kmip_config: KmipConfigFactory, tmp_path: Path) -> None:
    folder = tmp_path / "key.pem"
    folder.mkdir()
    error = _refusal(kmip_config(client_key_file=str(folder)))
    assert str(error) == f"kms.kmip.client_key_file: cannot read {folder}: not a regular file"


def test_certificate_file_without_a_certificate(
    kmip_config: KmipConfigFactory, pykmip_server: PyKmipServer
) -> None:
    error = _refusal(kmip_config(client_certificate_file=str(pykmip_server.client.key)))
    assert error.where == "kms.kmip.client_certificate_file"
    assert "holds no PEM certificate" in str(error)


def test_key_that_does_not_match_the_certificate(
    kmip_config: KmipConfigFactory, pykmip_server: PyKmipServer
) -> None:
    error = _refusal(kmip_config(client_key_file=str(pykmip_server.stranger.key)))
    assert error.where == "kms.kmip.client_key_file"
    assert "is not an unencrypted PEM private key matching" in str(error)


def test_encrypted_key_is_refused_without_a_prompt(
    kmip_config: KmipConfigFactory, pykmip_server: PyKmipServer, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(pykmip_server.client.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    error = _refusal(kmip_config(client_key_file=str(encrypted)))
    assert error.where == "kms.kmip.client_key_file"


def test_a_valid_configuration_opens_without_connecting(kmip_config: KmipConfigFactory) -> None:
    manager = open_key_manager(kmip_config(port=1), cast(Any, None))  # nothing listens on 1
    assert isinstance(manager, KmipKeyManager)
    manager.close()


# --- syncd config check ------------------------------------------------------------------


def _config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return run_syncd(["--config", str(path), "config", "check"])


def test_config_check_exits_2_naming_a_missing_client_key(
    pykmip_server: PyKmipServer, tmp_path: Path
) -> None:
    files = pykmip_server.client
    settings: dict[str, object] = {
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "kms": {
            "backend": "kmip",
            "kmip": pykmip_server.kmip_section(files),
        },
        "kacls": {"uri": "https://kacls.example.test/google_cse"},
        "certificate": {"crl_distribution_points": ["http://crl.example.test/issuing.crl"]},
    }
    config = tmp_path / "syncd.yaml"
    config.write_text(yaml.safe_dump(settings))
    init = run_syncd(["--config", str(config), "init"])
    assert init.returncode == 0, init.stderr
    good = _config_check(config)
    assert good.returncode == 0, good.stderr
    assert good.stdout.rstrip().endswith("configuration is valid")

    missing = tmp_path / "gone.key"
    settings["kms"]["kmip"]["client_key_file"] = str(missing)  # type: ignore[index]
    config.write_text(yaml.safe_dump(settings))
    bad = _config_check(config)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"problem: kms.kmip.client_key_file: file not found: {missing}"
    ]
