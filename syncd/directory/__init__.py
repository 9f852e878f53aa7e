"""Directory sources (static file; LDAP and Google Directory later) behind one interface."""

from __future__ import annotations

from syncd.config import (
    DirectoryConfig,
    GoogleConfig,
    GoogleDirectory,
    LdapDirectory,
    NoDirectory,
)
from syncd.directory.base import DirectorySource, DirectoryUser, Snapshot, SourceError
from syncd.errors import ConfigError

__all__ = ["DirectorySource", "DirectoryUser", "Snapshot", "SourceError", "open_source"]


def open_source(config: DirectoryConfig, google: GoogleConfig | None = None) -> DirectorySource:
    """The source ``directory.source`` names; ``google`` is the top-level ``google`` section
    (credentials, endpoint, admin_subject), needed by the ``google`` source."""
    if isinstance(config, GoogleDirectory):
        from syncd.directory.google import GoogleSource

        return GoogleSource(config.google, google or GoogleConfig())
    if isinstance(config, LdapDirectory):
        from syncd.directory.ldap import LdapSource

        return LdapSource(config.ldap)
    if isinstance(config, NoDirectory):
        raise ConfigError("directory.static.path", "required when directory.source is static")
    from syncd.directory.static import StaticSource

    return StaticSource(config.static.path)
