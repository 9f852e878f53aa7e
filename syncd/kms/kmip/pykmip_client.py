"""PyKMIP 0.11's client, adapted for syncd: syncd's TLS context and a float timeout on each
connection, its log records kept to itself, the exceptions it can raise on the wire, and the
key encodings it returns turned into the DER syncd wants.

PyKMIP's own TLS set-up checks the server's chain but not its host name, and PyKMIP reads
/etc/pykmip/pykmip.conf unless given a configuration file: here it gets /dev/null and the
context of syncd.kms.kmip.tls.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import Any

from cryptography.hazmat.primitives import serialization
from kmip.core import enums
from kmip.core import exceptions as kmip_exceptions
from kmip.pie.client import ProxyKmipClient
from kmip.pie.exceptions import (
    ClientConnectionFailure,
    ClientConnectionNotOpen,
    KmipOperationFailure,
)
from kmip.services.kmip_client import KMIPProxy
from kmip.services.kmip_protocol import RequestLengthMismatch

from syncd.kms.base import PrivateKeyFormat

# PyKMIP logs every failure it raises (with the exception) at ERROR: syncd reports them itself.
logging.getLogger("kmip").addHandler(logging.NullHandler())
logging.getLogger("kmip").propagate = False

# What can go wrong on the wire, besides the server refusing (KmipOperationFailure).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    KmipOperationFailure,
    OSError,  # socket errors, ssl.SSLError, TimeoutError
    EOFError,  # PyKMIP: "No data read from socket"
    ClientConnectionFailure,
    ClientConnectionNotOpen,
    RequestLengthMismatch,
    kmip_exceptions.InvalidKmipEncoding,
    kmip_exceptions.InvalidPrimitiveLength,
    kmip_exceptions.StreamNotEmptyError,
    kmip_exceptions.ReadValueError,
    kmip_exceptions.ConnectionClosed,
    kmip_exceptions.NetworkingError,
)

FORMATS = {"pkcs1": enums.KeyFormatType.PKCS_1, "pkcs8": enums.KeyFormatType.PKCS_8}


class TlsProxy(KMIPProxy):  # type: ignore[misc]
    """PyKMIP's connection with syncd's TLS context and a float timeout."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host=host, port=port, config_file=os.devnull, timeout=max(1, int(timeout)))
        self._context = context
        self._timeout = timeout

    def _create_socket(self, sock: Any) -> None:
        self.socket = self._context.wrap_socket(sock, server_hostname=self.host)
        self.socket.settimeout(self._timeout)


def checked(result: Any) -> Any:
    """The result of a KMIPProxy call, KmipOperationFailure if it failed."""
    if result.result_status.value != enums.ResultStatus.SUCCESS:
        raise KmipOperationFailure(
            result.result_status.value,
            result.result_reason.value,
            result.result_message.value if result.result_message else "",
        )
    return result


def spki(key: Any) -> bytes:
    """SubjectPublicKeyInfo DER of a PyKMIP public key object (PKCS#1 or X.509 format)."""
    loaded = serialization.load_der_public_key(bytes(key.value))
    return loaded.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_der(der: bytes, have: Any, want: PrivateKeyFormat) -> bytes:
    """``der`` (in KMIP format ``have``) rewritten as ``want``, in memory."""
    if have == FORMATS[want]:
        return der
    # Only re-encoded, never used here, and it came from the KMS over the mutually
    # authenticated channel: skip the RSA consistency check (40 ms a key, more than the Get).
    key = serialization.load_der_private_key(
        der, password=None, unsafe_skip_rsa_key_validation=True
    )
    private_format = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if want == "pkcs1"
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(
        serialization.Encoding.DER, private_format, serialization.NoEncryption()
    )


def open_client(host: str, port: int, context: ssl.SSLContext, timeout: float) -> Any:
    """An open PyKMIP client on a new connection (PyKMIP's exceptions on failure)."""
    client = ProxyKmipClient(hostname=host, port=port, config_file=os.devnull)
    client.proxy = TlsProxy(host, port, context, timeout)
    client.open()
    return client
