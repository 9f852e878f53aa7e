"""Retrying Google calls: exponential backoff with jitter, ``Retry-After`` honoured up to a
cap, and the translation of every failure into :class:`GoogleAPIError`.

Inside a pipeline step the step's :class:`~syncd.budget.RetryBudget` decides how many retries
and how much waiting are left (the runner charges the same budget when it runs a step again),
and every wait wakes on the stop event. Outside a step, ``RetryPolicy.max_retries`` bounds the
retries of one call. A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the
failure goes back to the caller, transient, marked ``later`` (for a task: its backoff).
"""

from __future__ import annotations

import http.client
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httplib2
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from syncd.budget import current_budget
from syncd.google.credentials import TokenEndpointError
from syncd.google.errors import GoogleAPIError, classify_http, parse_retry_after
from syncd.google.ratelimit import RateLimiter

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    http.client.HTTPException,
    httplib2.HttpLib2Error,
    auth_exceptions.TransportError,
)
"""No answer came: refused or dropped connection, timeout, broken HTTP."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 0.5
    max_delay: float = 32.0
    max_retry_after: float = 60.0
    """A longer ``Retry-After`` is not waited for: the failure is handed back, transient."""


def backoff_delay(
    policy: RetryPolicy, attempt: int, retry_after: float | None, draw: float
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based); ``draw`` is in [0, 1).

    Without ``Retry-After``: half of the capped exponential step plus a random part of the
    other half. With it: at least what Google asked, plus up to one base delay of jitter.
    """
    if retry_after is not None:
        return min(retry_after, policy.max_retry_after) + draw * policy.base_delay
    step = min(policy.max_delay, policy.base_delay * 2.0**attempt)
    return step / 2 + draw * step / 2


@dataclass(frozen=True)
class CallContext:
    """Names the call in errors and logs: ``Gmail refused keypairs.create for alice@...``."""

    api: str
    method: str
    user: str | None


def to_error(ctx: CallContext, exc: BaseException) -> tuple[GoogleAPIError, float | None]:
    """The GoogleAPIError for a failure, and the Retry-After it carried (if any)."""
    who = ctx.user or "the service account"
    if isinstance(exc, TokenEndpointError):
        return _token_endpoint_error(ctx, who, exc), None
    if isinstance(exc, HttpError):
        failure = classify_http(exc.resp.status, exc.content, getattr(exc.resp, "reason", ""))
        message = (
            f"{ctx.api} refused {ctx.method} for {who}: "
            f"{failure.status} {failure.reason}: {failure.message}"
        )
        error = GoogleAPIError(
            message,
            method=ctx.method,
            user=ctx.user,
            status=failure.status,
            reason=failure.reason,
            retryable=failure.retryable,
            google_message=failure.message,
            detail_reason=failure.detail_reason,
            retry_after=parse_retry_after(exc.resp.get("retry-after")),
        )
        return error, error.retry_after
    if isinstance(exc, auth_exceptions.RefreshError):
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        reason = str(data.get("error", "token_refused"))
        description = str(data.get("error_description", exc.args[0] if exc.args else ""))
        message = (
            f"Google refused an access token for {who} ({ctx.method}): {reason}: {description}"
        )
        error = GoogleAPIError(
            message,
            method=ctx.method,
            user=ctx.user,
            status=None,
            reason=reason,
            retryable=bool(getattr(exc, "retryable", False)),
            google_message=description,
        )
        return error, None
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    message = f"{ctx.api} did not answer {ctx.method} for {who}: {detail}"
    error = GoogleAPIError(
        message,
        method=ctx.method,
        user=ctx.user,
        status=None,
        reason="CONNECTION_ERROR",
        retryable=True,
        google_message=detail,
    )
    return error, None


def _token_endpoint_error(ctx: CallContext, who: str, exc: TokenEndpointError) -> GoogleAPIError:
    cause = exc.cause
    if isinstance(cause, auth_exceptions.RefreshError):
        detail = str(cause.args[0]) if cause.args else "server error"
        what = f"answered with an error ({detail})"
    else:
        detail = f"{type(cause).__name__}: {cause}".rstrip(": ")
        what = f"did not answer ({detail})"
    return GoogleAPIError(
        f"Google's OAuth token endpoint {exc.token_uri} {what}: no access token for {who} "
        f"({ctx.api} {ctx.method} not sent)",
        method=ctx.method,
        user=ctx.user,
        status=None,
        reason="TOKEN_ENDPOINT_UNAVAILABLE",
        retryable=True,
        google_message=detail,
    )


def call_with_retries(
    operation: Callable[[GoogleAPIError | None], T],
    ctx: CallContext,
    policy: RetryPolicy,
    limiter: RateLimiter | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """Run ``operation(previous_error)`` until it succeeds, fails for good, or retries run out.

    ``previous_error`` is None on the first attempt; an operation can use it to check whether
    a write whose earlier attempt failed ambiguously was carried out after all. The current
    retry budget (a pipeline step's), when it counts retries, replaces ``policy.max_retries``;
    its waits wake on stop (StopRequested).
    """
    budget = current_budget()
    attempt = 0
    previous: GoogleAPIError | None = None
    while True:
        if limiter is not None:
            limiter.acquire()
        try:
            return operation(previous)
        except (
            HttpError,
            auth_exceptions.RefreshError,
            TokenEndpointError,
            *TRANSPORT_ERRORS,
        ) as exc:
            error, retry_after = to_error(ctx, exc)
        if not error.retryable:
            raise error
        if retry_after is not None and retry_after > policy.max_retry_after:
            raise error.handed_back(
                f"Google asked to retry after {retry_after:.0f}s, longer than "
                f"google.max_retry_after ({policy.max_retry_after:.0f}s): retried later"
            )
        delay = backoff_delay(policy, attempt, retry_after, draw())
        if budget is not None and budget.counts_retries:
            refusal = budget.refusal(delay)
            if refusal is not None:
                raise error.handed_back(refusal)
        elif attempt >= policy.max_retries:
            raise error
        log.info(
            "%s %s for %s: %s %s, retry %d in %.2fs",
            ctx.api,
            ctx.method,
            ctx.user,
            error.status or "",
            error.reason,
            attempt + 1,
            delay,
        )
        if budget is None:
            sleep(delay)
        elif budget.counts_retries:
            budget.spend(delay)
        else:
            budget.wait(delay)
        attempt += 1
        previous = error
