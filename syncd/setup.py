"""First-time set-up (``syncd init``) and the deeper checks of ``syncd config check``."""

from __future__ import annotations

import os
from collections.abc import Callable

from syncd.config import Config
from syncd.errors import ConfigError, SyncdError
from syncd.kms.kacls import KEY_BYTES, load_wrapping_key
from syncd.kms.local import create_master_key, load_master_key
from syncd.state.db import Database


def _create_wrapping_key(config: Config) -> str:
    path = config.kacls.wrapping_key_file
    if path is None:
        raise ConfigError(
            "kacls.wrapping_key_file", "set it to where the new key should be written"
        )
    if path.exists():
        return f"KACLS wrapping key {path} exists; kept"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(KEY_BYTES))
    return f"created KACLS wrapping key {path} (mode 0600)"


def initialise(config: Config, *, generate_kacls_key: bool) -> list[str]:
    """Create what a new installation needs; never overwrites an existing key."""
    done = []
    master = config.kms.local.master_key_file
    if config.kms.backend == "local":
        if master.exists():
            load_master_key(master)
            done.append(f"master key {master} exists; kept")
        else:
            create_master_key(master)
            done.append(f"created master key {master} (mode 0600)")
    if generate_kacls_key:
        done.append(_create_wrapping_key(config))
    database = Database.open(config.state.url, require_current=False)
    applied = database.upgrade()
    done.append(
        f"state store {database.display_url}: "
        + (f"applied {', '.join(applied)}" if applied else "schema up to date")
    )
    return done


def check_configuration(config: Config) -> list[str]:
    """Problems found by reading what the configuration points at (keys, secrets, database)."""
    checks: list[Callable[[], object]] = [
        lambda: load_master_key(config.kms.local.master_key_file),
        lambda: load_wrapping_key(config.kacls),
        lambda: Database.open(config.state.url, require_current=True),
    ]
    problems = []
    for check in checks:
        try:
            check()
        except SyncdError as exc:
            problems.append(str(exc))
    if config.kacls.uri is None:
        problems.append("kacls.uri: not set; Gmail needs it to reach the KACLS")
    return problems
