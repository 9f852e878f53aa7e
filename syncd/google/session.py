"""One Google API as syncd calls it: per-thread transport, credentials per subject, the shared
rate limit, and retries.

httplib2 is not thread-safe, so each thread gets its own ``httplib2.Http`` and its own
service object; an ``AuthorizedHttp`` binding the subject's credentials wraps it per call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httplib2
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import Resource, build
from googleapiclient.http import HttpRequest

from syncd.config import GoogleConfig
from syncd.google.credentials import DelegatedCredentials, load_key_info
from syncd.google.errors import GoogleAPIError
from syncd.google.ratelimit import RateLimiter
from syncd.google.retry import CallContext, RetryPolicy, call_with_retries


class GoogleSession:
    def __init__(
        self,
        cfg: GoogleConfig,
        api: tuple[str, str],
        label: str,
        scopes: Sequence[str],
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._cfg = cfg
        self._api = api
        self.label = label
        self.credentials = DelegatedCredentials(load_key_info(cfg), scopes)
        self.retry = retry or RetryPolicy(
            max_retries=cfg.max_retries, max_retry_after=cfg.max_retry_after
        )
        self.limiter = RateLimiter(
            cfg.requests_per_second, burst=max(1, int(cfg.requests_per_second))
        )
        self._sleep = sleep
        self._local = threading.local()

    def _thread_parts(self) -> tuple[httplib2.Http, Resource]:
        parts: tuple[httplib2.Http, Resource] | None = getattr(self._local, "parts", None)
        if parts is None:
            http = httplib2.Http(timeout=self._cfg.timeout_seconds)
            options = {"api_endpoint": self._cfg.endpoint} if self._cfg.endpoint else None
            service = build(
                self._api[0],
                self._api[1],
                http=http,
                static_discovery=True,
                cache_discovery=False,
                client_options=options,
            )
            parts = (http, service)
            self._local.parts = parts
        return parts

    def call(
        self,
        method: str,
        subject: str,
        make_request: Callable[[Resource], HttpRequest],
        *,
        user: str | None = None,
        before_retry: Callable[[], Any] | None = None,
    ) -> Any:
        """Run one API method as ``subject`` with retries; GoogleAPIError when it fails.

        ``before_retry`` runs before re-sending after a failure whose outcome is unknown (no
        answer, 500, 502, 504); a value other than None ends the call with that value (a
        write found already done).
        """
        ctx = CallContext(self.label, method, user or subject)

        def attempt(previous: GoogleAPIError | None) -> Any:
            if previous is not None and previous.outcome_unknown and before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found
            return self.once(subject, make_request)

        return call_with_retries(attempt, ctx, self.retry, self.limiter, sleep=self._sleep)

    def once(self, subject: str, make_request: Callable[[Resource], HttpRequest]) -> Any:
        """One attempt, no retry, no rate limit wait; the libraries' exceptions pass through,
        and TokenEndpointError when no access token could be fetched."""
        creds = self.credentials.for_subject(subject)
        http, service = self._thread_parts()
        self.credentials.ensure_token(creds, http)
        return make_request(service).execute(http=AuthorizedHttp(creds, http=http))

    def all_pages(
        self,
        method: str,
        subject: str,
        field: str,
        make_request: Callable[[Resource, str | None], HttpRequest],
    ) -> list[dict[str, Any]]:
        """Every item of a paged listing: ``field`` of each page, following nextPageToken."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:

            def one_page(service: Resource, page_token: str | None = token) -> HttpRequest:
                return make_request(service, page_token)

            page = self.call(method, subject, one_page)
            items.extend(page.get(field, []))
            token = page.get("nextPageToken")
            if not token:
                return items
