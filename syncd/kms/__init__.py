"""KMS backends behind one KeyManager interface; ``open_key_manager`` picks the configured one."""

from __future__ import annotations

from sqlalchemy import Engine

from syncd.config import Config, with_backend
from syncd.kms.base import KeyManager, KeyRef
from syncd.kms.kacls import load_wrapping_key
from syncd.kms.keyring import Keyring

__all__ = ["KeyManager", "KeyRef", "Keyring", "open_key_manager", "open_keyring"]


def open_key_manager(
    config: Config, engine: Engine, *, need_wrapping_key: bool = False
) -> KeyManager:
    """The backend ``kms.backend`` names, ready to use (kmip: its transport's settings and
    files checked, ConfigError naming the key; no connection is made until the first call).

    The KACLS wrapping key is loaded when configured (and required with ``need_wrapping_key``,
    unless the KMS may wrap kaclsData itself).
    A master key that does not match the store's key check value is refused (ConfigError).
    """
    kacls = config.kacls
    configured = kacls.wrapping_key is not None
    if config.kms.backend == "kmip":
        from syncd.kms.kmip.manager import open_kmip_key_manager

        # The KMS may wrap kaclsData itself: the KACLS key is then needed only if configured,
        # or if it never does (kms.kmip.server_side_wrap: never).
        server_may_wrap = config.kms.kmip.server_side_wrap != "never"
        needed = configured or (need_wrapping_key and not server_may_wrap)
        return open_kmip_key_manager(config, load_wrapping_key(kacls) if needed else None)
    wrapping_key = load_wrapping_key(kacls) if configured or need_wrapping_key else None
    from syncd.kms.local import LocalKeyManager, load_master_key, verify_master_key

    path = config.kms.local.master_key_file
    master_key = load_master_key(path)
    verify_master_key(engine, master_key, path)
    return LocalKeyManager(engine, master_key, wrapping_key)


def open_keyring(config: Config, engine: Engine, *, need_wrapping_key: bool = False) -> Keyring:
    """The configured backend, opened now, and the others that hold older keys, opened when a
    key of theirs is first used (as if ``kms.backend`` named them; their own settings apply)."""

    def open_backend(name: str) -> KeyManager:
        kms = with_backend(config.kms, name)
        return open_key_manager(config.model_copy(update={"kms": kms}), engine)

    configured = open_key_manager(config, engine, need_wrapping_key=need_wrapping_key)
    return Keyring(configured, open_backend)
