"""Google's refusals as syncd errors, and which of them are worth retrying.

:func:`classify_http` reads Google's error JSON (``{"error": {"code", "message", "status",
"errors": [{"reason"}]}}``); :data:`RETRYABLE_STATUSES` and :data:`RATE_LIMIT_REASONS` decide
``retryable``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from syncd.errors import EXIT_FAILURES, SyncdError

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
"""403 answers carrying one of these reasons are rate limits, not refusals."""
OUTCOME_UNKNOWN_STATUSES = frozenset({500, 502, 504})
"""Answers after which a write may or may not have been carried out (like a lost answer)."""


class GoogleAPIError(SyncdError):
    """A Google API call failed: refused, unreachable, or no access token was granted.

    ``status`` is the HTTP status (None when no answer came), ``reason`` Google's canonical
    status (``INVALID_ARGUMENT``) or OAuth error (``invalid_grant``), ``detail_reason`` the
    legacy reason (``rateLimitExceeded``), ``user`` the mailbox or subject concerned.
    ``retry_after`` is the wait Google asked for, if any. ``later`` marks a transient failure
    that is not to be retried within the current step (the step's retry budget is spent, or
    Google asked for a longer wait than ``google.max_retry_after``): the task's backoff retries
    it in a later pass.
    """

    exit_code = EXIT_FAILURES

    def __init__(
        self,
        message: str,
        *,
        method: str,
        user: str | None,
        status: int | None,
        reason: str,
        retryable: bool,
        google_message: str = "",
        detail_reason: str | None = None,
        retry_after: float | None = None,
        later: bool = False,
    ) -> None:
        self.method = method
        self.user = user
        self.status = status
        self.reason = reason
        self.retryable = retryable
        self.google_message = google_message
        self.detail_reason = detail_reason
        self.retry_after = retry_after
        self.later = later
        super().__init__(message)

    def handed_back(self, why: str) -> GoogleAPIError:
        """This failure, not to be retried within the step, ``why`` added to its message."""
        return GoogleAPIError(
            f"{self}; {why}",
            method=self.method,
            user=self.user,
            status=self.status,
            reason=self.reason,
            retryable=self.retryable,
            google_message=self.google_message,
            detail_reason=self.detail_reason,
            retry_after=self.retry_after,
            later=True,
        )

    @property
    def outcome_unknown(self) -> bool:
        """True when the request may have been carried out although it failed."""
        if self.status is None:
            return self.reason == "CONNECTION_ERROR"
        return self.status in OUTCOME_UNKNOWN_STATUSES


@dataclass(frozen=True)
class GoogleFailure:
    """What an HTTP error answer says, read from its JSON body."""

    status: int
    reason: str
    detail_reason: str | None
    message: str

    @property
    def retryable(self) -> bool:
        if self.status in RETRYABLE_STATUSES:
            return True
        return self.status == 403 and self.detail_reason in RATE_LIMIT_REASONS


def classify_http(status: int, content: bytes, http_reason: str = "") -> GoogleFailure:
    """Read Google's error body (JSON or not) for an HTTP error answer."""
    try:
        data = json.loads(content.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        text = content.decode("utf-8", "replace").strip()[:200]
        return GoogleFailure(status, http_reason.upper() or "HTTP_ERROR", None, text)
    details = error.get("errors")
    detail_reason = None
    if isinstance(details, list) and details and isinstance(details[0], dict):
        detail_reason = details[0].get("reason")
    reason = error.get("status") or detail_reason or http_reason.upper() or "HTTP_ERROR"
    return GoogleFailure(status, str(reason), detail_reason, str(error.get("message", "")))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
