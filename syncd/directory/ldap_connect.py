"""Opening an LDAP connection: TLS settings, bind, and failover across the configured servers.

Servers are tried in the order given. A server that cannot be reached, refuses the TLS
handshake or presents a certificate that fails verification is skipped for the next one; if
none answers, the error names every server and why. A refused bind (wrong DN or password) stops
at once: every server would refuse it the same way. The password never appears in a message.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from dataclasses import dataclass

from ldap3 import NONE, SIMPLE, Connection, Server, Tls
from ldap3.core import exceptions as ldap_errors

from syncd.config import LdapSourceConfig, read_secret
from syncd.directory.base import SourceError
from syncd.directory.ldap_strategy import use_raw_values
from syncd.errors import ConfigError

WHERE = "directory.ldap"


def describe(error: Exception) -> str:
    """A one-line account of an ldap3 or socket error, without ldap3's certificate dumps."""
    if isinstance(error, ldap_errors.LDAPCertificateError) or "doesn't match any name" in str(
        error
    ):
        return "TLS certificate does not match the server's host name"
    text = str(error).replace("\n", " ").strip()
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl")[0].strip(" )")
        return f"TLS certificate refused ({reason or 'verification failed'})"
    if isinstance(error, ldap_errors.LDAPOperationResult):
        description = error.description or "error"
        message = (error.message or "").strip()
        return f"{description}: {message}" if message else str(description)
    if len(text) > 300:
        text = text[:300] + "..."
    return text or type(error).__name__


@dataclass(frozen=True)
class LdapEndpoint:
    """An open, bound connection and the server URL it reached."""

    connection: Connection
    url: str


def _tls(config: LdapSourceConfig) -> Tls:
    if config.ca_file is not None and not config.ca_file.is_file():
        raise ConfigError(f"{WHERE}.ca_file", f"file not found: {config.ca_file}")
    if not config.tls_verify:
        return Tls(validate=ssl.CERT_NONE)
    return Tls(
        validate=ssl.CERT_REQUIRED,
        ca_certs_file=str(config.ca_file) if config.ca_file else None,
    )


def _password(config: LdapSourceConfig) -> str | None:
    secret = read_secret(config, "bind_password", WHERE)
    if secret is None:
        return None
    try:
        return secret.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"{WHERE}.bind_password", "the password is not UTF-8 text") from None


def connect(config: LdapSourceConfig) -> LdapEndpoint:
    """A bound connection to the first configured server that answers, or SourceError."""
    tls = _tls(config)
    password = _password(config)
    if config.bind_dn and password is None:
        raise ConfigError(
            f"{WHERE}.bind_password", "bind_dn is set: give bind_password_file or bind_password_env"
        )
    failures: list[str] = []
    for number, url in enumerate(config.servers):
        server = Server(url, get_info=NONE, tls=tls, connect_timeout=config.connect_timeout)
        connection = Connection(
            server,
            user=config.bind_dn,
            password=password,
            authentication=SIMPLE if config.bind_dn else None,
            receive_timeout=math.ceil(config.operation_timeout),  # ldap3 needs an int
            raise_exceptions=True,
            read_only=True,
            auto_referrals=False,
            check_names=False,
        )
        use_raw_values(connection)  # syncd reads raw_attributes only
        try:
            connection.open()
            if config.start_tls:
                connection.start_tls()
            if config.bind_dn:
                connection.bind()
            return LdapEndpoint(connection, url)
        except (ldap_errors.LDAPInvalidCredentialsResult, ldap_errors.LDAPBindError) as exc:
            _close(connection)
            raise SourceError(
                f"{WHERE}.bind_dn: {url} refused the bind as {config.bind_dn}: {describe(exc)}"
            ) from None
        except (ldap_errors.LDAPException, OSError, ssl.SSLError) as exc:
            _close(connection)
            failures.append(f"servers.{number} {url}: {describe(exc)}")
    raise SourceError(f"{WHERE}: no server could be used: " + "; ".join(failures))


def _close(connection: Connection) -> None:
    with contextlib.suppress(ldap_errors.LDAPException, OSError):
        connection.unbind()


def close(endpoint: LdapEndpoint) -> None:
    _close(endpoint.connection)
