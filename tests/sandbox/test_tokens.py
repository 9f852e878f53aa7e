"""The token endpoint and the per-call token checks, through google-auth over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import google.auth.crypt
import google.auth.jwt
import google_auth_httplib2
import httplib2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions
from googleapiclient.errors import HttpError

from tests.support.sandbox import ADMIN, DOMAIN, RunningSandbox

from .conftest import GMAIL_SCOPE, api, credentials_for

ALICE = f"alice@{DOMAIN}"
AUDIENCE = "https://oauth2.googleapis.com/token"


def refresh(creds: Any) -> None:
    creds.refresh(google_auth_httplib2.Request(httplib2.Http()))


def error_of(exc: exceptions.RefreshError) -> dict[str, Any]:
    return exc.args[1]  # type: ignore[no-any-return]


def test_valid_assertion_gets_a_bearer_token(sandbox: RunningSandbox) -> None:
    creds = credentials_for(sandbox, ALICE, [GMAIL_SCOPE])
    refresh(creds)
    assert creds.token.startswith("ya29.")
    assert creds.expiry is not None and creds.valid


def test_wrong_private_key_is_refused(sandbox: RunningSandbox) -> None:
    forged = dict(sandbox.key_info)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged["private_key"] = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    creds = credentials_for(sandbox, ALICE, [GMAIL_SCOPE])
    creds = type(creds).from_service_account_info(forged, scopes=[GMAIL_SCOPE], subject=ALICE)
    with pytest.raises(exceptions.RefreshError) as caught:
        refresh(creds)
    assert error_of(caught.value) == {
        "error": "invalid_grant",
        "error_description": "Invalid JWT Signature.",
    }


def test_unknown_service_account_is_refused(sandbox: RunningSandbox) -> None:
    info = dict(sandbox.key_info, client_email="stranger@elsewhere.iam.gserviceaccount.com")
    creds = credentials_for(sandbox, ALICE, [GMAIL_SCOPE])
    creds = type(creds).from_service_account_info(info, scopes=[GMAIL_SCOPE], subject=ALICE)
    with pytest.raises(exceptions.RefreshError) as caught:
        refresh(creds)
    assert error_of(caught.value)["error"] == "invalid_grant"
    assert "account not found" in error_of(caught.value)["error_description"]


def test_scope_not_delegated_is_refused(sandbox: RunningSandbox) -> None:
    creds = credentials_for(sandbox, ALICE, ["https://mail.google.com/"])
    with pytest.raises(exceptions.RefreshError) as caught:
        refresh(creds)
    assert error_of(caught.value)["error"] == "unauthorized_client"


def test_subject_outside_the_domain_is_refused(sandbox: RunningSandbox) -> None:
    creds = credentials_for(sandbox, "mallory@evil.example", [GMAIL_SCOPE])
    with pytest.raises(exceptions.RefreshError) as caught:
        refresh(creds)
    assert error_of(caught.value) == {
        "error": "invalid_grant",
        "error_description": "Invalid email or User ID",
    }


def _post_assertion(sandbox: RunningSandbox, claims: dict[str, Any]) -> tuple[int, Any]:
    signer = google.auth.crypt.RSASigner.from_service_account_info(sandbox.key_info)  # type: ignore[no-untyped-call]
    assertion = google.auth.jwt.encode(signer, claims).decode()  # type: ignore[no-untyped-call]
    body = f"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    response, content = httplib2.Http().request(
        sandbox.server.token_uri,
        "POST",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return response.status, json.loads(content)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "syncd@syncd-test.iam.gserviceaccount.com",
        "sub": ALICE,
        "scope": GMAIL_SCOPE,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(changes)
    return claims


def test_expired_assertion_is_refused(sandbox: RunningSandbox) -> None:
    now = int(time.time())
    status, body = _post_assertion(sandbox, _claims(iat=now - 7200, exp=now - 3600))
    assert status == 400
    assert body["error"] == "invalid_grant"
    assert "short-lived" in body["error_description"]


def test_assertion_for_another_audience_is_refused(sandbox: RunningSandbox) -> None:
    status, body = _post_assertion(sandbox, _claims(aud=sandbox.server.token_uri))
    assert (status, body["error"]) == (400, "invalid_grant")


def test_hand_made_valid_assertion_is_accepted(sandbox: RunningSandbox) -> None:
    status, body = _post_assertion(sandbox, _claims())
    assert status == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] > 3000


def _raw_keypairs_list(sandbox: RunningSandbox, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{sandbox.server.url}gmail/v1/users/{ALICE}/settings/cse/keypairs"
    response, content = httplib2.Http().request(url, "GET", headers=headers)
    return response.status, json.loads(content)


def test_call_without_a_token_is_401(sandbox: RunningSandbox) -> None:
    status, body = _raw_keypairs_list(sandbox, None)
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"
    assert body["error"]["code"] == 401
    assert body["error"]["errors"][0]["reason"] == "required"


def test_call_with_an_unknown_token_is_401(sandbox: RunningSandbox) -> None:
    status, body = _raw_keypairs_list(sandbox, "ya29.made-up")
    assert status == 401
    assert body["error"]["errors"][0]["reason"] == "authError"


def test_expired_token_is_401_and_the_library_refreshes_it(sandbox: RunningSandbox) -> None:
    creds = credentials_for(sandbox, ALICE, [GMAIL_SCOPE])
    refresh(creds)
    old_token = creds.token
    assert _raw_keypairs_list(sandbox, old_token)[0] == 200
    assert sandbox.admin("POST", "tokens:expire")["expired"] >= 1
    assert _raw_keypairs_list(sandbox, old_token)[0] == 401
    cse = api(sandbox, "gmail", "v1", creds).users().settings().cse()
    assert cse.keypairs().list(userId="me").execute() == {"cseKeyPairs": []}
    assert creds.token != old_token


def test_token_without_a_gmail_scope_is_403(sandbox: RunningSandbox) -> None:
    scope = "https://www.googleapis.com/auth/admin.directory.user.readonly"
    creds = credentials_for(sandbox, ALICE, [scope])
    cse = api(sandbox, "gmail", "v1", creds).users().settings().cse()
    with pytest.raises(HttpError) as caught:
        cse.keypairs().list(userId=ALICE).execute()
    assert caught.value.status_code == 403
    body = json.loads(caught.value.content)
    assert body["error"]["errors"][0]["reason"] == "insufficientPermissions"


def test_acting_on_another_mailbox_is_403(sandbox: RunningSandbox) -> None:
    creds = credentials_for(sandbox, ALICE, [GMAIL_SCOPE])
    cse = api(sandbox, "gmail", "v1", creds).users().settings().cse()
    with pytest.raises(HttpError) as caught:
        cse.keypairs().list(userId=f"bob@{DOMAIN}").execute()
    assert caught.value.status_code == 403
    assert f"Delegation denied for {ALICE}" in caught.value.reason


def test_directory_needs_an_admin_subject(sandbox: RunningSandbox) -> None:
    scope = "https://www.googleapis.com/auth/admin.directory.user.readonly"
    as_alice = api(sandbox, "admin", "directory_v1", credentials_for(sandbox, ALICE, [scope]))
    with pytest.raises(HttpError) as caught:
        as_alice.users().list(customer="my_customer").execute()
    assert caught.value.status_code == 403
    as_admin = api(sandbox, "admin", "directory_v1", credentials_for(sandbox, ADMIN, [scope]))
    assert len(as_admin.users().list(customer="my_customer").execute()["users"]) == 6
