"""Directory sources (static file; LDAP and Google Directory later) behind one interface."""

from __future__ import annotations

from syncd.config import DirectoryConfig
from syncd.directory.base import DirectorySource, DirectoryUser, Snapshot, SourceError
from syncd.errors import ConfigError

__all__ = ["DirectorySource", "DirectoryUser", "Snapshot", "SourceError", "open_source"]


def open_source(config: DirectoryConfig) -> DirectorySource:
    """The source ``directory.source`` names."""
    if config.static is None:
        raise ConfigError("directory.static.path", "required when directory.source is static")
    from syncd.directory.static import StaticSource

    return StaticSource(config.static.path)
