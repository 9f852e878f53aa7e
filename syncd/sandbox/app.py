"""One HTTP request in, one answer out: the token endpoint, the Google APIs (with injected
faults), and the sandbox's own admin endpoints.

Admin endpoints, answered only to loopback clients and never subject to faults:

    GET  /sandbox/v1/faults          current fault settings
    POST /sandbox/v1/faults          replace them: {"error_503": 0.3, "latency_ms": 20, ...}
    GET  /sandbox/v1/clock           {"now": "..."} (the sandbox clock)
    POST /sandbox/v1/clock           {"advance_seconds": N} moves it forward
    GET  /sandbox/v1/stats           request counts by method (see stats.py)
    POST /sandbox/v1/stats:reset     zero them
    POST /sandbox/v1/tokens:expire   make every issued access token expired
    POST /sandbox/v1/users:rename    {"from": old, "to": new}: same id and mailbox, the old
                                     address kept as an alias (see accounts.py)
    POST /sandbox/v1/users:delete    {"email": address}: the user and their mailbox
    POST /sandbox/v1/users:create    a user record ({"primaryEmail": ..., "id": ...})
"""

from __future__ import annotations

import ipaddress
import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import syncd.sandbox.accounts as accounts
from syncd.errors import SyncdError
from syncd.sandbox.clock import rfc3339
from syncd.sandbox.context import Call, Services
from syncd.sandbox.errors import ApiError, invalid, not_found
from syncd.sandbox.faults import Fault, FaultInjector, parse_settings
from syncd.sandbox.routes import find_route
from syncd.sandbox.stats import Stats
from syncd.sandbox.tokens import OAuthError, TokenIssuer, require_scopes

log = logging.getLogger(__name__)

TOKEN_PATH = "/token"
ADMIN_PREFIX = "/sandbox/v1/"
TOKEN_METHOD = "oauth2.token"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    """Close the connection without answering."""

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


def _error_answer(error: ApiError) -> Answer:
    return Answer(error.code, error.body(), error.headers)


def _fault_answer(fault: Fault, retry_after: float | None) -> Answer:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    if fault is Fault.TOO_MANY_REQUESTS:
        error = ApiError(
            429, "Too many concurrent requests for user.", domain="usageLimits", headers=headers
        )
    elif fault is Fault.RATE_LIMIT_403:
        error = ApiError(
            403,
            "User Rate Limit Exceeded",
            reason="userRateLimitExceeded",
            domain="usageLimits",
        )
    elif fault is Fault.INTERNAL:
        error = ApiError(500, "Internal error encountered.")
    else:
        error = ApiError(503, "The service is currently unavailable.", headers=headers)
    return _error_answer(error)


class SandboxApp:
    """The sandbox's request dispatcher; the HTTP server calls :meth:`dispatch`."""

    def __init__(self, services: Services, faults: FaultInjector) -> None:
        self.services = services
        self.faults = faults
        self.tokens = TokenIssuer()
        self.stats = Stats()

    def dispatch(
        self, verb: str, target: str, headers: dict[str, str], body: bytes, client: str
    ) -> Answer:
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        if path.startswith(ADMIN_PREFIX):
            return self._admin(verb, path[len(ADMIN_PREFIX) :], body, client)
        try:
            if path == TOKEN_PATH and verb == "POST":
                return self._with_faults(TOKEN_METHOD, True, lambda: self._token(body))
            route, params = find_route(verb, path)
        except ApiError as error:
            return _error_answer(error)

        def run() -> Answer:
            grant = self.tokens.lookup(headers.get("authorization"))
            require_scopes(grant, route.scopes)
            query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
            reply = route.handler(self.services, Call(params, query, _json(body), grant))
            return Answer(reply.status, reply.body)

        return self._with_faults(route.name, False, run)

    def _with_faults(self, method: str, is_token: bool, run: Callable[[], Answer]) -> Answer:
        self.stats.request(method)
        latency, fault = self.faults.draw(is_token)
        self.faults.sleep(latency)
        if fault is not None:
            self.stats.fault(method, fault.value)
        if fault is Fault.DROP:
            return Answer(0, drop=True)
        if fault is not None and fault is not Fault.DROP_AFTER:
            answer = _fault_answer(fault, self.faults.settings.retry_after_seconds)
        else:
            answer = self._guarded(run)
        self.stats.answer(method, answer.status)
        if fault is Fault.DROP_AFTER:
            return Answer(0, drop=True)
        return answer

    @staticmethod
    def _guarded(run: Callable[[], Answer]) -> Answer:
        try:
            answer: Answer = run()
        except ApiError as error:
            return _error_answer(error)
        except OAuthError as error:
            return Answer(error.status, error.body())
        except SyncdError as error:
            log.error("sandbox data problem: %s", error)
            return _error_answer(ApiError(500, f"Sandbox data problem: {error}"))
        except Exception:
            log.exception("sandbox handler failed")
            return _error_answer(ApiError(500, "Internal error encountered."))
        return answer

    def _token(self, body: bytes) -> Answer:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
        store = self.services.store
        answer = self.tokens.grant(form, store.service_accounts(), store.directory())
        return Answer(200, answer)

    # --- admin -----------------------------------------------------------------------

    def _admin(self, verb: str, name: str, body: bytes, client: str) -> Answer:
        if not ipaddress.ip_address(client).is_loopback:
            return _error_answer(ApiError(403, "The sandbox admin API answers loopback only."))
        store = self.services.store
        handlers: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {
            ("GET", "faults"): lambda: self.faults.settings.model_dump(),
            ("POST", "faults"): lambda: self._set_faults(body),
            ("GET", "clock"): lambda: {"now": rfc3339(self.services.clock.now())},
            ("POST", "clock"): lambda: self._advance_clock(body),
            ("GET", "stats"): self.stats.snapshot,
            ("POST", "stats:reset"): self._reset_stats,
            ("POST", "tokens:expire"): lambda: {"expired": self.tokens.expire_all()},
            ("POST", "users:rename"): lambda: accounts.admin_rename(store, _json(body)),
            ("POST", "users:delete"): lambda: accounts.admin_delete(store, _json(body)),
            ("POST", "users:create"): lambda: accounts.admin_create(store, _json(body)),
        }
        handler = handlers.get((verb, name))
        if handler is None:
            return _error_answer(not_found(f"No sandbox admin endpoint {verb} {name}."))
        try:
            return Answer(200, handler())
        except ApiError as error:
            return _error_answer(error)

    def _set_faults(self, body: bytes) -> dict[str, Any]:
        data = _json(body) or {}
        if not isinstance(data, dict):
            raise invalid("The fault settings must be a JSON object.")
        try:
            settings = parse_settings(data)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        self.faults.configure(settings)
        return settings.model_dump()

    def _advance_clock(self, body: bytes) -> dict[str, Any]:
        data = _json(body)
        seconds = data.get("advance_seconds") if isinstance(data, dict) else None
        if not isinstance(seconds, int | float) or seconds < 0:
            raise invalid('Give {"advance_seconds": N} with N >= 0.')
        return {"now": rfc3339(self.services.clock.advance(float(seconds)))}

    def _reset_stats(self) -> dict[str, Any]:
        self.stats.reset()
        return self.stats.snapshot()


def _json(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise invalid("Invalid JSON payload received.") from None
