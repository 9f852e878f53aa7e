"""Secrets named by the configuration, and files holding key material.

A secret ``X`` may be given inline (``X``), as a file path (``X_file``) or as the name of an
environment variable (``X_env``); at most one of the three. The three YAML keys fold into one
:class:`SecretRef` (see :mod:`syncd.config.base`), read only when used (:meth:`SecretRef.read`,
the one place that reads a file or looks a variable up), and never shown in clear.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from syncd.config.types import ConfigPath
from syncd.errors import ConfigError


class SecretRef(BaseModel):
    """Where one secret comes from: inline, a file or an environment variable (exactly one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str
    """The configuration key of the secret (``bind_password``); its forms add _file, _env."""
    inline: SecretStr | None = None
    """The secret itself, written in the configuration file (prefer a file or a variable)."""
    file: ConfigPath | None = None
    """A file holding the secret (mode 0600 advised), read each time the secret is used."""
    env: str | None = None
    """The name of an environment variable holding the secret."""

    def origin(self, where: str) -> str:
        """The key path of the form given, e.g. ``kacls.wrapping_key_file``."""
        if self.file is not None:
            return f"{where}.{self.name}_file"
        if self.env:
            return f"{where}.{self.name}_env"
        return f"{where}.{self.name}"

    def read(self, where: str) -> bytes:
        """The secret's bytes; ``where`` is the key path of its section (``directory.ldap``).

        ConfigError naming ``<where>.<name>_file`` and the file, or ``<where>.<name>_env``
        and the variable, when it cannot be read.
        """
        if self.inline is not None:
            return self.inline.get_secret_value().encode()
        if self.file is not None:
            return read_private_file(self.file, self.origin(where), strict_mode=False)
        value = os.environ.get(self.env or "")
        if not value:
            raise ConfigError(self.origin(where), f"environment variable {self.env} is not set")
        return value.encode()


def read_secret(section: BaseModel, name: str, where: str) -> bytes | None:
    """The secret ``name`` of ``section`` (a :class:`SecretRef` field), None when not set.

    ``where`` is the section's key path, used in error messages.
    """
    ref = getattr(section, name, None)
    if ref is None:
        return None
    if not isinstance(ref, SecretRef):
        raise TypeError(f"{type(section).__name__}.{name} is not a secret")
    return ref.read(where)


def read_private_file(path: Path, where: str, *, strict_mode: bool) -> bytes:
    """Read a file holding key material.

    With ``strict_mode`` the file must not be readable by group or others (mode 0600 or
    stricter); syncd refuses a master key anyone else could read.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(where, f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(where, f"cannot read {path}: not a regular file")
    if strict_mode and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            where,
            f"{path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run chmod 600 {path}",
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None


def write_new_key_file(path: Path, data: bytes, where: str) -> None:
    """Create ``path`` (mode 0600) holding ``data``; never overwrites, never leaves a part."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(where, f"{path} already exists; not overwritten") from None
    except OSError as error:
        raise ConfigError(where, f"cannot create {path}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        path.unlink(missing_ok=True)
        raise ConfigError(where, f"cannot write {path}: {error.strerror}") from None
