"""The keyring: the configured backend for new keys, others opened once, when first needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from syncd.config import load_config
from syncd.errors import ConfigError
from syncd.kms import KeyManager, Keyring, open_key_manager
from syncd.kms.local import LocalKeyManager
from syncd.state.models import Base


def _local(tmp_path: Path) -> LocalKeyManager:
    engine = create_engine(f"sqlite:///{tmp_path / 'kms.db'}")
    Base.metadata.create_all(engine)
    return LocalKeyManager(engine, os.urandom(32), None)


def test_other_backends_open_once_when_first_needed(tmp_path: Path) -> None:
    configured = _local(tmp_path)
    configured.name = "kmip"  # stands for the configured external backend
    opened: list[str] = []
    older = _local(tmp_path)

    def open_backend(name: str) -> KeyManager:
        opened.append(name)
        return older

    keys = Keyring(configured, open_backend)
    assert keys.holding(None) is configured and keys.holding("kmip") is configured
    assert opened == []
    assert keys.holding("local") is older and keys.holding("local") is older
    assert opened == ["local"]
    with pytest.raises(ConfigError, match="the backend 'cosmian', which this syncd does not know"):
        keys.holding("cosmian")


def test_a_holder_that_cannot_open_names_its_key_path(tmp_path: Path) -> None:
    """kms.backend switched to kmip, the old master key file gone: the error says which key
    path, which file, and why it is still needed."""
    config_path = tmp_path / "syncd.yaml"
    config_path.write_text(
        "state: {url: 'sqlite:///" + str(tmp_path / "state.db") + "'}\n"
        "kms: {local: {master_key_file: " + str(tmp_path / "gone.key") + "}}\n"
    )
    config = load_config(config_path)
    engine = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    Base.metadata.create_all(engine)
    configured = _local(tmp_path)
    configured.name = "kmip"
    switched = Keyring(configured, lambda name: open_key_manager(config, engine))
    with pytest.raises(ConfigError) as caught:
        switched.holding("local")
    assert caught.value.where == "kms.local.master_key_file"
    assert str(caught.value) == (
        f"kms.local.master_key_file: file not found: {tmp_path / 'gone.key'} (needed for the "
        "keys the local backend holds (made before kms.backend became kmip); keep its settings "
        "until those users are renewed)"
    )
