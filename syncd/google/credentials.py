"""Service-account credentials with domain-wide delegation, one per impersonated subject.

The key comes from ``google.service_account_key[_file|_env]``; its ``token_uri`` is where
tokens are fetched (the sandbox's, in tests and rehearsals). The key's text is never logged
and never put in an error message.

A token is fetched before the API request that needs it (:meth:`DelegatedCredentials.
ensure_token`), so a token endpoint that does not answer is named as such
(:class:`TokenEndpointError`), and with one request per attempt: google-auth's own retries
of the token request (three tries, sleeps that ignore a stop) are turned off, syncd's retry
budget does the retrying.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2 import _client, service_account

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
    ref = cfg.service_account_key
    if ref is not None and ref.file is not None:
        return f"{ref.origin('google')}: {ref.file}"
    if ref is not None and ref.env:
        return f"{ref.origin('google')}: ${ref.env}"
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


class TokenEndpointError(Exception):
    """The OAuth token endpoint did not answer, or answered with a server error.

    ``cause`` is the transport error or google-auth's RefreshError (retryable ones only).
    """

    def __init__(self, token_uri: str, cause: BaseException) -> None:
        self.token_uri = token_uri
        self.cause = cause
        super().__init__(f"{token_uri}: {cause}")


class _OneTryCredentials(service_account.Credentials):
    """Service-account credentials whose delegated token request is sent once, not retried."""

    def _perform_refresh_token(self, request: Any) -> None:
        if not self._subject:
            super()._perform_refresh_token(request)
            return
        assertion = self._make_authorization_grant_assertion()  # type: ignore[no-untyped-call]
        token, expiry, _ = _client.jwt_grant(  # type: ignore[no-untyped-call]
            request, self._token_uri, assertion, can_retry=False
        )
        self.token, self.expiry = token, expiry


TOKEN_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    httplib2.HttpLib2Error,
    auth_exceptions.TransportError,
)


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
            self._base = _OneTryCredentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(scopes)
            )
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                where, "the key file's private_key cannot be read as an RSA private key"
            ) from None
        self.client_email: str = info["client_email"]
        self.token_uri: str = info["token_uri"]
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

    def ensure_token(self, creds: service_account.Credentials, http: httplib2.Http) -> None:
        """Fetch a token for ``creds`` unless it holds a valid one.

        TokenEndpointError when the endpoint does not answer or answers with a server error
        (google-auth's RefreshError marked retryable); a refusal (``invalid_grant``, ...)
        passes through as RefreshError.
        """
        if creds.valid:
            return
        try:
            creds.refresh(google_auth_httplib2.Request(http))  # type: ignore[no-untyped-call]
        except auth_exceptions.RefreshError as error:
            if getattr(error, "retryable", False):
                raise TokenEndpointError(self.token_uri, error) from error
            raise
        except TOKEN_TRANSPORT_ERRORS as error:
            raise TokenEndpointError(self.token_uri, error) from error
