"""The TLS client context for a KMIP server, built from ``kms.kmip.*`` and checked up front.

The server's chain is checked against ``ca_file`` (or the system's trust store) and its name
against the host syncd connects to; TLS 1.2 or later; the client certificate and key come from
the configured PEM files. Every file is read before any connection: a missing, unreadable or
malformed one is a ConfigError naming the key and the file (``syncd config check`` exits 2).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from syncd.config import KmipConfig, read_private_file
from syncd.errors import ConfigError

CERT_WHERE = "kms.kmip.client_certificate_file"
KEY_WHERE = "kms.kmip.client_key_file"
CA_WHERE = "kms.kmip.ca_file"


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


def _certificates(path: Path, where: str) -> None:
    data = read_private_file(path, where, strict_mode=False)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(where, f"{path} holds no PEM certificate") from None


def client_context(config: KmipConfig, *, transport: str) -> ssl.SSLContext:
    """The context; the client certificate and key are required (binary KMIP always
    authenticates with them)."""
    cert, key = config.client_certificate_file, config.client_key_file
    if cert is None:
        raise ConfigError(CERT_WHERE, f"required for kms.kmip.transport: {transport}")
    if key is None:
        raise ConfigError(KEY_WHERE, f"required for kms.kmip.transport: {transport}")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.ca_file is not None:
        _certificates(config.ca_file, CA_WHERE)
        try:
            context.load_verify_locations(cafile=str(config.ca_file))
        except ssl.SSLError as error:
            raise ConfigError(CA_WHERE, f"{config.ca_file}: {error.reason}") from None
    _certificates(cert, CERT_WHERE)
    read_private_file(key, KEY_WHERE, strict_mode=False)
    try:
        context.load_cert_chain(str(cert), str(key), password=_no_password)
    except ssl.SSLError as error:
        raise ConfigError(
            KEY_WHERE,
            f"{key} is not an unencrypted PEM private key matching {cert} ({error.reason})",
        ) from None
    return context
