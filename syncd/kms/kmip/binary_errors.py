"""What a PyKMIP failure means for syncd: one line, and whether retrying can help.

PyKMIP reports an answer the server refused as ``KmipOperationFailure`` (a KMIP result reason
and the server's message); a network failure surfaces as whatever the socket or TLS layer
raised (``ConnectionRefusedError``, ``TimeoutError``, ``ssl.SSLError``, ``EOFError`` when the
server closed the session...). :func:`kms_error` turns each into ``KMSUnavailableError`` (not
reached, timed out, dropped: worth retrying) or ``KMSRefusedError`` (answered and refused, TLS
refused: a person must act), with a message ``<KMS>: <operation> <object>: <cause>``.
"""

from __future__ import annotations

import socket
import ssl

from kmip.core import enums
from kmip.pie.exceptions import KmipOperationFailure

from syncd.errors import KMSError, KMSRefusedError, KMSUnavailableError
from syncd.kms.kmip.transport import NotSupportedByServer

MAX_SERVER_MESSAGE = 160

_R = enums.ResultReason
_NOT_SUPPORTED = {
    _R.OPERATION_NOT_SUPPORTED,
    _R.FEATURE_NOT_SUPPORTED,
    _R.KEY_FORMAT_TYPE_NOT_SUPPORTED,
    _R.KEY_COMPRESSION_TYPE_NOT_SUPPORTED,
    _R.ENCODING_OPTION_ERROR,
    _R.KEY_WRAP_TYPE_NOT_SUPPORTED,
    _R.UNSUPPORTED_CRYPTOGRAPHIC_PARAMETERS,
    _R.UNSUPPORTED_ATTRIBUTE,
}
_CAUSES = {
    _R.ITEM_NOT_FOUND: "not found",
    _R.PERMISSION_DENIED: "permission denied",
    _R.AUTHENTICATION_NOT_SUCCESSFUL: "authentication refused",
    _R.WRONG_KEY_LIFECYCLE_STATE: "key not active",
    _R.OBJECT_ARCHIVED: "object archived",
    _R.ILLEGAL_OPERATION: "illegal operation",
    _R.INVALID_FIELD: "invalid request",
    _R.INVALID_MESSAGE: "invalid request",
    _R.CRYPTOGRAPHIC_FAILURE: "cryptographic failure",
    _R.OPERATION_NOT_SUPPORTED: "operation not supported",
    _R.FEATURE_NOT_SUPPORTED: "not supported",
    _R.KEY_FORMAT_TYPE_NOT_SUPPORTED: "key format not supported",
    _R.KEY_COMPRESSION_TYPE_NOT_SUPPORTED: "key compression not supported",
    _R.ENCODING_OPTION_ERROR: "encoding option not supported",
    _R.KEY_WRAP_TYPE_NOT_SUPPORTED: "key wrapping not supported",
    _R.UNSUPPORTED_CRYPTOGRAPHIC_PARAMETERS: "cryptographic parameters not supported",
    _R.UNSUPPORTED_ATTRIBUTE: "attribute not supported",
    _R.OBJECT_NOT_FOUND: "not found",
    _R.OBJECT_DESTROYED: "destroyed",
    _R.NOT_AUTHORISED: "permission denied",
    _R.WRAPPING_OBJECT_NOT_FOUND: "wrapping key not found",
    _R.BAD_CRYPTOGRAPHIC_PARAMETERS: "bad cryptographic parameters",
    _R.GENERAL_FAILURE: "failed",
}


def one_line(text: object, limit: int = MAX_SERVER_MESSAGE) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _refusal_cause(failure: KmipOperationFailure) -> str:
    reason = failure.reason
    cause = _CAUSES.get(reason, one_line(getattr(reason, "name", reason)).lower())
    detail = one_line(failure.message or "")
    # PyKMIP reports a key that is not active as "permission denied": say what it means.
    if "active state" in detail.lower() or "must be active" in detail.lower():
        cause = "key not active"
    return f"{cause} ({detail})" if detail else cause


def _tls_cause(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS: server certificate not trusted ({one_line(error.verify_message)}; "
            "check kms.kmip.ca_file and kms.kmip.host)"
        )
    reason = (error.reason or "").lower().replace("_", " ")
    if "alert" in reason:
        # The server sent an alert during the handshake: it refused our certificate.
        return f"TLS: the server refused the client certificate ({reason})"
    return f"TLS handshake failed ({one_line(reason or error)})"


def is_refusal(error: BaseException) -> bool:
    """The server answered: the connection that carried the request is still good."""
    return isinstance(error, KmipOperationFailure | KMSRefusedError)


def kms_error(kms: str, operation: str, error: BaseException, timeout: float) -> KMSError:
    """The syncd error for ``error`` raised by ``operation`` (e.g. ``Sign with key 12``)."""
    where = f"{kms}: {operation}"
    if isinstance(error, KMSError):
        return error
    if isinstance(error, KmipOperationFailure):
        kind = NotSupportedByServer if error.reason in _NOT_SUPPORTED else KMSRefusedError
        return kind(f"{where}: {_refusal_cause(error)}")
    if isinstance(error, ssl.SSLError) and not isinstance(error, ssl.SSLEOFError):
        return KMSRefusedError(f"{where}: {_tls_cause(error)}")
    if isinstance(error, TimeoutError | socket.timeout):
        return KMSUnavailableError(f"{where}: no answer within {timeout:g} s")
    if isinstance(error, ConnectionRefusedError):
        return KMSUnavailableError(f"{where}: connection refused")
    if isinstance(error, socket.gaierror):
        return KMSUnavailableError(f"{where}: cannot resolve the host name ({error.strerror})")
    if isinstance(error, EOFError | ConnectionError | ssl.SSLEOFError):
        return KMSUnavailableError(f"{where}: the server closed the connection")
    if isinstance(error, OSError):
        return KMSUnavailableError(f"{where}: {one_line(error.strerror or error)}")
    # Anything else is PyKMIP failing to read or write a message: the session is unusable.
    return KMSUnavailableError(
        f"{where}: broken session ({type(error).__name__}: {one_line(error)})"
    )
