"""Service-account credentials with domain-wide delegation, one per impersonated subject.

The key comes from ``google.service_account_key[_file|_env]``; its ``token_uri`` is where
tokens are fetched (the sandbox's, in tests and rehearsals). The key's text is never logged
and never put in an error message.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

from google.oauth2 import service_account

from syncd.config import GoogleConfig, read_secret
from syncd.errors import ConfigError

_AUTH = "https://www.googleapis.com/auth/"
GMAIL_SETTINGS_SCOPE = _AUTH + "gmail.settings.basic"
DIRECTORY_SCOPES = (
    _AUTH + "admin.directory.user.readonly",
    _AUTH + "admin.directory.group.member.readonly",
)
_REQUIRED_FIELDS = ("client_email", "private_key", "token_uri")
_WHERE = "google.service_account_key"


def key_source(cfg: GoogleConfig) -> str:
    """Where the key comes from, for messages: the setting and its file or variable."""
    if cfg.service_account_key_file is not None:
        return f"google.service_account_key_file: {cfg.service_account_key_file}"
    if cfg.service_account_key_env:
        return f"google.service_account_key_env: ${cfg.service_account_key_env}"
    return _WHERE


def load_key_info(cfg: GoogleConfig) -> dict[str, Any]:
    """The service account key file's fields; ConfigError if missing or unusable.

    Messages name the setting and the file, never any of the file's content.
    """
    raw = read_secret(cfg, "service_account_key", "google")
    if raw is None:
        raise ConfigError(
            _WHERE, "no service account key: set google.service_account_key_file (mode 0600)"
        )
    where = key_source(cfg)
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(
            where, "not JSON; expected the key file Google Cloud gives for a service account"
        ) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(where, 'not a service account key file (no "type": "service_account")')
    missing = [name for name in _REQUIRED_FIELDS if not info.get(name)]
    if missing:
        raise ConfigError(where, f"the key file lacks {', '.join(missing)}")
    return info


class DelegatedCredentials:
    """Credentials impersonating one subject each, cached so tokens are reused.

    google-auth credentials refresh themselves; two threads refreshing the same subject at once
    only cost one extra token request.
    """

    def __init__(
        self,
        info: dict[str, Any],
        scopes: Sequence[str],
        cache_size: int = 1024,
        where: str = _WHERE,
    ):
        try:
            self._base = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(scopes)
            )
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                where, "the key file's private_key cannot be read as an RSA private key"
            ) from None
        self.client_email: str = info["client_email"]
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._by_subject: OrderedDict[str, service_account.Credentials] = OrderedDict()

    def for_subject(self, subject: str) -> service_account.Credentials:
        key = subject.lower()
        with self._lock:
            creds = self._by_subject.get(key)
            if creds is not None:
                self._by_subject.move_to_end(key)
                return creds
            creds = cast(service_account.Credentials, self._base.with_subject(subject))
            self._by_subject[key] = creds
            if len(self._by_subject) > self._cache_size:
                self._by_subject.popitem(last=False)
            return creds
