"""Google's error answers: the ApiError the handlers raise and the JSON body Google sends.

Every Google API answers a failure with ``{"error": {"code", "message", "status", "errors":
[{"message", "domain", "reason"}]}}``; the canonical ``status`` and the legacy ``reason``
depend on the HTTP code, as in :data:`CANONICAL`.
"""

from __future__ import annotations

from typing import Any

CANONICAL: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "invalidArgument"),
    401: ("UNAUTHENTICATED", "authError"),
    403: ("PERMISSION_DENIED", "forbidden"),
    404: ("NOT_FOUND", "notFound"),
    405: ("INVALID_ARGUMENT", "methodNotAllowed"),
    409: ("ALREADY_EXISTS", "alreadyExists"),
    429: ("RESOURCE_EXHAUSTED", "rateLimitExceeded"),
    500: ("INTERNAL", "backendError"),
    503: ("UNAVAILABLE", "backendError"),
}
"""HTTP code -> (canonical status, legacy reason) when a handler gives neither."""


class ApiError(Exception):
    """A refusal in Google's shape; the server turns it into the HTTP answer."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        reason: str | None = None,
        domain: str = "global",
        headers: dict[str, str] | None = None,
    ) -> None:
        default_status, default_reason = CANONICAL.get(code, ("UNKNOWN", "unknown"))
        self.code = code
        self.message = message
        self.status = status or default_status
        self.reason = reason or default_reason
        self.domain = domain
        self.headers = dict(headers or {})
        super().__init__(f"{code} {self.status}: {message}")

    def body(self) -> dict[str, Any]:
        """The JSON body Google sends with this error."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
                "status": self.status,
            }
        }


def invalid(message: str) -> ApiError:
    """400 INVALID_ARGUMENT."""
    return ApiError(400, message)


def precondition(message: str) -> ApiError:
    """400 FAILED_PRECONDITION (the request is well formed but the state forbids it)."""
    return ApiError(400, message, status="FAILED_PRECONDITION", reason="failedPrecondition")


def not_found(message: str) -> ApiError:
    """404 NOT_FOUND."""
    return ApiError(404, message)


def already_exists(message: str) -> ApiError:
    """409 ALREADY_EXISTS."""
    return ApiError(409, message)


def forbidden(message: str, reason: str = "forbidden") -> ApiError:
    """403 PERMISSION_DENIED."""
    return ApiError(403, message, reason=reason)
