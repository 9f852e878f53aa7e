"""The OAuth2 token endpoint (JWT-bearer grant) and the bearer check every API call makes.

A service account signs a JWT (RS256) claiming ``iss`` = its client_email, ``sub`` = the user
it impersonates, ``scope`` and ``aud`` = https://oauth2.googleapis.com/token. The checks in
:data:`ASSERTION_CHECKS` refuse it the way Google does (``{"error", "error_description"}``).
Issued tokens live in memory only; a restarted sandbox answers old tokens with 401, and the
client libraries fetch new ones.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from syncd.sandbox.errors import ApiError
from syncd.sandbox.store import DirectoryData, ServiceAccount, ServiceAccounts

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
TOKEN_LIFETIME = 3600
MAX_ASSERTION_LIFETIME = 3600
CLOCK_SKEW = 300

_BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
    "timeframe. Check your iat and exp values in the assertion and use a clock with skew to "
    "account for clock differences between systems."
)
_UNAUTHORIZED_SCOPES = (
    "Client is unauthorized to retrieve access tokens using this method, or client not "
    "authorized for any of the scopes requested."
)


class OAuthError(Exception):
    """A refusal from the token endpoint, in OAuth2's error shape."""

    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"{status} {error}: {description}")

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class Assertion:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


@dataclass(frozen=True)
class GrantRequest:
    """Everything the checks look at for one token request."""

    assertion: Assertion
    account: ServiceAccount | None
    directory: DirectoryData
    now: float


@dataclass(frozen=True)
class TokenGrant:
    client_email: str
    subject: str | None
    scopes: frozenset[str]
    expires_at: float = field(compare=False)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def decode_assertion(text: str) -> Assertion:
    """Split and decode a compact JWT without trusting it yet."""
    parts = text.split(".")
    if len(parts) != 3:
        raise OAuthError(400, "invalid_grant", "Invalid JWT: not a signed JWT.")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error):
        raise OAuthError(400, "invalid_grant", "Invalid JWT: cannot decode it.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OAuthError(400, "invalid_grant", "Invalid JWT: header and claims must be objects.")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    return Assertion(header, claims, signing_input, signature)


def _check_algorithm(req: GrantRequest) -> OAuthError | None:
    if req.assertion.header.get("alg") != "RS256":
        return OAuthError(400, "invalid_grant", "Invalid JWT: the algorithm must be RS256.")
    return None


def _check_issuer(req: GrantRequest) -> OAuthError | None:
    if req.account is None:
        return OAuthError(400, "invalid_grant", "Invalid grant: account not found")
    return None


@lru_cache(maxsize=64)
def _public_key(public_pem: str) -> PublicKeyTypes:
    """A service account key, parsed once: every token request is checked against it."""
    return serialization.load_pem_public_key(public_pem.encode())


def _signature_valid(public_pem: str, assertion: Assertion) -> bool:
    key = _public_key(public_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(
            assertion.signature, assertion.signing_input, padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


def _check_signature(req: GrantRequest) -> OAuthError | None:
    assert req.account is not None
    kid = req.assertion.header.get("kid")
    keys = [k for k in req.account.keys if kid is None or k.private_key_id == kid]
    if not any(_signature_valid(k.public_key_pem, req.assertion) for k in keys):
        return OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
    return None


def _check_audience(req: GrantRequest) -> OAuthError | None:
    if req.assertion.claims.get("aud") != TOKEN_AUDIENCE:
        return OAuthError(
            400, "invalid_grant", f"Invalid JWT: the audience must be {TOKEN_AUDIENCE}."
        )
    return None


def _check_times(req: GrantRequest) -> OAuthError | None:
    iat, exp = req.assertion.claims.get("iat"), req.assertion.claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        return OAuthError(400, "invalid_grant", _BAD_TIMES)
    if exp <= req.now or iat > req.now + CLOCK_SKEW or exp - iat > MAX_ASSERTION_LIFETIME:
        return OAuthError(400, "invalid_grant", _BAD_TIMES)
    return None


def requested_scopes(req: GrantRequest) -> frozenset[str]:
    scope = req.assertion.claims.get("scope")
    return frozenset(scope.split()) if isinstance(scope, str) else frozenset()


def _check_scopes(req: GrantRequest) -> OAuthError | None:
    assert req.account is not None
    wanted = requested_scopes(req)
    if not wanted:
        return OAuthError(
            400, "invalid_scope", "Invalid OAuth scope or ID token audience provided."
        )
    if req.assertion.claims.get("sub") and not wanted <= set(req.account.scopes):
        return OAuthError(401, "unauthorized_client", _UNAUTHORIZED_SCOPES)
    return None


def _check_subject(req: GrantRequest) -> OAuthError | None:
    subject = req.assertion.claims.get("sub")
    if subject is None:
        return None
    if not isinstance(subject, str) or req.directory.user(subject) is None:
        return OAuthError(400, "invalid_grant", "Invalid email or User ID")
    return None


ASSERTION_CHECKS: list[Callable[[GrantRequest], OAuthError | None]] = [
    _check_algorithm,
    _check_issuer,
    _check_signature,
    _check_audience,
    _check_times,
    _check_scopes,
    _check_subject,
]
"""Google's checks of a JWT-bearer assertion, in the order they apply."""


def check_grant(req: GrantRequest) -> OAuthError | None:
    """The first check the request fails, or None."""
    for check in ASSERTION_CHECKS:
        error = check(req)
        if error is not None:
            return error
    return None


PRUNE_INTERVAL = 60.0
"""Seconds between sweeps of expired tokens out of the grants table."""


class TokenIssuer:
    """Issues bearer tokens for valid assertions and looks them up on every API call."""

    def __init__(self, lifetime: int = TOKEN_LIFETIME) -> None:
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._grants: dict[str, TokenGrant] = {}
        self._next_prune = 0.0

    def grant(
        self, form: dict[str, str], accounts: ServiceAccounts, directory: DirectoryData
    ) -> dict[str, Any]:
        """The token endpoint: the JSON answer for a valid request, OAuthError otherwise."""
        if form.get("grant_type") != JWT_BEARER:
            raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type.")
        assertion = decode_assertion(form.get("assertion", ""))
        issuer = assertion.claims.get("iss")
        account = accounts.find(issuer) if isinstance(issuer, str) else None
        now = time.time()
        req = GrantRequest(assertion, account, directory, now)
        error = check_grant(req)
        if error is not None:
            raise error
        assert account is not None
        subject = assertion.claims.get("sub")
        token = "ya29.sandbox." + secrets.token_urlsafe(32)
        grant = TokenGrant(
            account.client_email, subject, requested_scopes(req), now + self._lifetime
        )
        with self._lock:
            if now >= self._next_prune:  # a sweep per grant would cost O(tokens) per user
                self._grants = {t: g for t, g in self._grants.items() if g.expires_at > now}
                self._next_prune = now + PRUNE_INTERVAL
            self._grants[token] = grant
        return {"access_token": token, "expires_in": self._lifetime - 1, "token_type": "Bearer"}

    def lookup(self, authorization: str | None) -> TokenGrant:
        """The grant behind an ``Authorization: Bearer`` header; ApiError 401 otherwise."""
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                reason="required",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        with self._lock:
            grant = self._grants.get(authorization[len("Bearer ") :].strip())
        if grant is None or grant.expires_at <= time.time():
            raise ApiError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                    'error="invalid_token"'
                },
            )
        return grant

    def expire_all(self) -> int:
        """Make every issued token expired (as if an hour passed); returns how many."""
        with self._lock:
            count = len(self._grants)
            self._grants = {
                t: TokenGrant(g.client_email, g.subject, g.scopes, 0.0)
                for t, g in self._grants.items()
            }
        return count


def require_scopes(grant: TokenGrant, accepted: frozenset[str]) -> None:
    """403 unless the token carries one of the scopes the method accepts."""
    if not grant.scopes & accepted:
        raise ApiError(
            403,
            "Request had insufficient authentication scopes.",
            reason="insufficientPermissions",
        )
