"""Gmail CSE key pairs and identities in the sandbox: fields, paging, Google's rules, errors,
persistence; through google-api-python-client over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from googleapiclient.errors import HttpError

from syncd.pki.chain import fingerprint, parse_pkcs7
from syncd.sandbox.server import SandboxServer
from tests.support.sandbox import (
    DOMAIN,
    KACLS_URI,
    RunningSandbox,
    days_ago,
    leaf_pkcs7,
    root_signed_pkcs7,
)
from tests.support.testca import TestHierarchy

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
Gmail = Callable[..., Any]


def keypair_body(pkcs7: str, kacls_data: str = "d3JhcHBlZA==") -> dict[str, Any]:
    return {
        "pkcs7": pkcs7,
        "privateKeyMetadata": [
            {"kaclsKeyMetadata": {"kaclsUri": KACLS_URI, "kaclsData": kacls_data}}
        ],
    }


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    """Run a request expected to fail; its HTTP status and Google's ``error`` object."""
    with pytest.raises(HttpError) as caught:
        call.execute()
    body = json.loads(caught.value.content)
    error = body["error"]
    assert set(error) == {"code", "message", "status", "errors"}
    assert error["code"] == caught.value.status_code
    assert error["errors"][0]["message"] == error["message"]
    return caught.value.status_code, error


def upload(gmail: Gmail, hierarchy: TestHierarchy, user: str = ALICE) -> dict[str, Any]:
    body = keypair_body(leaf_pkcs7(hierarchy, user))
    return gmail(user).keypairs().create(userId=user, body=body).execute()  # type: ignore[no-any-return]


def test_created_key_pair_has_googles_output_fields(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    pkcs7 = leaf_pkcs7(hierarchy, ALICE)
    created = gmail(ALICE).keypairs().create(userId=ALICE, body=keypair_body(pkcs7)).execute()
    assert created["subjectEmailAddresses"] == [ALICE]
    assert created["enablementState"] == "enabled"
    assert "disableTime" not in created and "pkcs7" not in created
    pem_certs = x509.load_pem_x509_certificates(created["pem"].encode())
    uploaded = parse_pkcs7(pkcs7)
    assert [fingerprint(c) for c in pem_certs] == [fingerprint(c) for c in uploaded]
    metadata = created["privateKeyMetadata"][0]
    assert metadata["kaclsKeyMetadata"] == {"kaclsUri": KACLS_URI, "kaclsData": "d3JhcHBlZA=="}
    assert metadata["privateKeyMetadataId"]
    fetched = gmail(ALICE).keypairs().get(userId="me", keyPairId=created["keyPairId"]).execute()
    assert fetched == created


def test_list_pages_with_page_size_and_tokens(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    ids = {upload(gmail, hierarchy)["keyPairId"] for _ in range(5)}
    cse = gmail(ALICE)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = cse.keypairs().list(userId=ALICE, pageSize=2, pageToken=token).execute()
        seen += [kp["keyPairId"] for kp in page["cseKeyPairs"]]
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == ids
    assert len(cse.keypairs().list(userId=ALICE).execute()["cseKeyPairs"]) == 5
    status, error = refused(cse.keypairs().list(userId=ALICE, pageToken="bogus"))
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")


def test_unreadable_pkcs7_is_400(gmail: Gmail) -> None:
    call = gmail(ALICE).keypairs().create(userId=ALICE, body=keypair_body("not a chain"))
    status, error = refused(call)
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")
    assert "Invalid pkcs7" in error["message"]


def test_chain_to_an_untrusted_root_is_400(gmail: Gmail, other_hierarchy: TestHierarchy) -> None:
    body = keypair_body(leaf_pkcs7(other_hierarchy, ALICE))
    status, error = refused(gmail(ALICE).keypairs().create(userId=ALICE, body=body))
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith("Certificate chain validation failed: ")
    assert "the chain must end at a trusted root" in error["message"]


def test_chain_without_an_intermediate_is_400(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    body = keypair_body(root_signed_pkcs7(hierarchy, ALICE))
    status, error = refused(gmail(ALICE).keypairs().create(userId=ALICE, body=body))
    assert status == 400 and "intermediate" in error["message"]


def test_leaf_without_email_protection_is_400_unless_validation_is_off(
    gmail: Gmail, hierarchy: TestHierarchy
) -> None:
    pkcs7 = leaf_pkcs7(hierarchy, ALICE, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    cse = gmail(ALICE)
    status, error = refused(cse.keypairs().create(userId=ALICE, body=keypair_body(pkcs7)))
    assert status == 400 and "emailProtection" in error["message"].replace(" ", "")
    lax = cse.keypairs().create(userId=ALICE, body=keypair_body(pkcs7), chainValidation="none")
    created = lax.execute()
    assert created["enablementState"] == "enabled"
    identity = {"emailAddress": ALICE, "primaryKeyPairId": created["keyPairId"]}
    status, error = refused(cse.identities().create(userId=ALICE, body=identity))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")


def test_leaf_for_another_address_is_400(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    body = keypair_body(leaf_pkcs7(hierarchy, BOB))
    status, error = refused(gmail(ALICE).keypairs().create(userId=ALICE, body=body))
    assert status == 400 and BOB in error["message"]


def test_expired_leaf_is_400(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    pkcs7 = leaf_pkcs7(hierarchy, ALICE, not_before=days_ago(60), not_after=days_ago(1))
    status, _ = refused(gmail(ALICE).keypairs().create(userId=ALICE, body=keypair_body(pkcs7)))
    assert status == 400


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [{"kaclsKeyMetadata": {"kaclsUri": KACLS_URI}}],
        [{"kaclsKeyMetadata": {"kaclsUri": "ftp://x", "kaclsData": "x"}}],
        [{"kaclsKeyMetadata": {"kaclsUri": KACLS_URI, "kaclsData": "x" * 8193}}],
    ],
)
def test_bad_private_key_metadata_is_400(
    gmail: Gmail, hierarchy: TestHierarchy, metadata: list[Any]
) -> None:
    body = {"pkcs7": leaf_pkcs7(hierarchy, ALICE), "privateKeyMetadata": metadata}
    status, error = refused(gmail(ALICE).keypairs().create(userId=ALICE, body=body))
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")


def test_same_certificate_twice_is_409(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    body = keypair_body(leaf_pkcs7(hierarchy, ALICE))
    cse = gmail(ALICE)
    first = cse.keypairs().create(userId=ALICE, body=body).execute()
    status, error = refused(cse.keypairs().create(userId=ALICE, body=body))
    assert (status, error["status"]) == (409, "ALREADY_EXISTS")
    assert first["keyPairId"] in error["message"]


def test_identity_lifecycle(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    cse = gmail(ALICE)
    first, second = upload(gmail, hierarchy), upload(gmail, hierarchy)
    identity = {"emailAddress": ALICE, "primaryKeyPairId": first["keyPairId"]}
    assert cse.identities().create(userId="me", body=identity).execute() == identity
    status, error = refused(cse.identities().create(userId=ALICE, body=identity))
    assert (status, error["status"]) == (409, "ALREADY_EXISTS")
    assert cse.identities().get(userId=ALICE, cseEmailAddress=ALICE).execute() == identity
    renewed = {"emailAddress": ALICE, "primaryKeyPairId": second["keyPairId"]}
    patched = cse.identities().patch(userId=ALICE, emailAddress=ALICE, body=renewed).execute()
    assert patched == renewed
    assert cse.identities().list(userId=ALICE).execute() == {"cseIdentities": [renewed]}
    assert cse.identities().delete(userId=ALICE, cseEmailAddress=ALICE).execute() in ("", {})
    status, _ = refused(cse.identities().get(userId=ALICE, cseEmailAddress=ALICE))
    assert status == 404
    status, _ = refused(cse.identities().delete(userId=ALICE, cseEmailAddress=ALICE))
    assert status == 404


def test_identity_with_another_users_key_pair_is_refused(
    gmail: Gmail, hierarchy: TestHierarchy
) -> None:
    bobs = upload(gmail, hierarchy, BOB)
    identity = {"emailAddress": ALICE, "primaryKeyPairId": bobs["keyPairId"]}
    status, error = refused(gmail(ALICE).identities().create(userId=ALICE, body=identity))
    assert status == 400 and bobs["keyPairId"] in error["message"]
    as_bob = {"emailAddress": ALICE, "primaryKeyPairId": bobs["keyPairId"]}
    status, _ = refused(gmail(BOB).identities().create(userId=BOB, body=as_bob))
    assert status == 400


def test_identity_needs_an_enabled_key_pair_and_one_configuration(
    gmail: Gmail, hierarchy: TestHierarchy
) -> None:
    cse = gmail(ALICE)
    created = upload(gmail, hierarchy)
    cse.keypairs().disable(userId=ALICE, keyPairId=created["keyPairId"], body={}).execute()
    identity = {"emailAddress": ALICE, "primaryKeyPairId": created["keyPairId"]}
    status, error = refused(cse.identities().create(userId=ALICE, body=identity))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    status, _ = refused(cse.identities().create(userId=ALICE, body={"emailAddress": ALICE}))
    assert status == 400
    both = dict(
        identity,
        signAndEncryptKeyPairs={"signingKeyPairId": "a", "encryptionKeyPairId": "b"},
    )
    status, _ = refused(cse.identities().create(userId=ALICE, body=both))
    assert status == 400


def test_sign_and_encrypt_pairs_are_accepted(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    sign, encrypt = upload(gmail, hierarchy), upload(gmail, hierarchy)
    pairs = {"signingKeyPairId": sign["keyPairId"], "encryptionKeyPairId": encrypt["keyPairId"]}
    identity = {"emailAddress": ALICE, "signAndEncryptKeyPairs": pairs}
    assert gmail(ALICE).identities().create(userId=ALICE, body=identity).execute() == identity


def test_identity_must_be_the_primary_address(gmail: Gmail, hierarchy: TestHierarchy) -> None:
    created = upload(gmail, hierarchy)
    identity = {"emailAddress": f"sales@{DOMAIN}", "primaryKeyPairId": created["keyPairId"]}
    status, error = refused(gmail(ALICE).identities().create(userId=ALICE, body=identity))
    assert status == 400 and "primary address" in error["message"]


def test_disable_enable_and_obliterate_after_thirty_days(
    sandbox: RunningSandbox, gmail: Gmail, hierarchy: TestHierarchy
) -> None:
    cse = gmail(ALICE)
    key_pair_id = upload(gmail, hierarchy)["keyPairId"]
    status, error = refused(cse.keypairs().obliterate(userId=ALICE, keyPairId=key_pair_id, body={}))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    disabled = cse.keypairs().disable(userId=ALICE, keyPairId=key_pair_id, body={}).execute()
    assert disabled["enablementState"] == "disabled" and disabled["disableTime"].endswith("Z")
    enabled = cse.keypairs().enable(userId=ALICE, keyPairId=key_pair_id, body={}).execute()
    assert enabled["enablementState"] == "enabled" and "disableTime" not in enabled
    cse.keypairs().disable(userId=ALICE, keyPairId=key_pair_id, body={}).execute()
    sandbox.admin("POST", "clock", {"advance_seconds": 29 * 86400})
    status, error = refused(cse.keypairs().obliterate(userId=ALICE, keyPairId=key_pair_id, body={}))
    assert status == 400 and "can be obliterated after" in error["message"]
    sandbox.admin("POST", "clock", {"advance_seconds": 2 * 86400})
    cse.keypairs().obliterate(userId=ALICE, keyPairId=key_pair_id, body={}).execute()
    status, _ = refused(cse.keypairs().get(userId=ALICE, keyPairId=key_pair_id))
    assert status == 404


def test_key_pair_in_use_cannot_be_obliterated(
    sandbox: RunningSandbox, gmail: Gmail, hierarchy: TestHierarchy
) -> None:
    cse = gmail(ALICE)
    key_pair_id = upload(gmail, hierarchy)["keyPairId"]
    identity = {"emailAddress": ALICE, "primaryKeyPairId": key_pair_id}
    cse.identities().create(userId=ALICE, body=identity).execute()
    cse.keypairs().disable(userId=ALICE, keyPairId=key_pair_id, body={}).execute()
    sandbox.admin("POST", "clock", {"advance_seconds": 31 * 86400})
    status, error = refused(cse.keypairs().obliterate(userId=ALICE, keyPairId=key_pair_id, body={}))
    assert status == 400 and "used by the identity" in error["message"]


def test_unknown_key_pair_is_404(gmail: Gmail) -> None:
    status, error = refused(gmail(ALICE).keypairs().get(userId=ALICE, keyPairId="nope"))
    assert (status, error["status"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize("user", [f"dave@{DOMAIN}", f"erin@{DOMAIN}"])
def test_suspended_or_mailless_user_is_refused(gmail: Gmail, user: str) -> None:
    status, error = refused(gmail(user).keypairs().list(userId=user))
    assert (status, error["message"]) == (400, "Mail service not enabled")


def test_restart_keeps_uploads_and_clock(
    sandbox: RunningSandbox, gmail: Gmail, hierarchy: TestHierarchy, tmp_path: Path
) -> None:
    created = upload(gmail, hierarchy)
    identity = {"emailAddress": ALICE, "primaryKeyPairId": created["keyPairId"]}
    gmail(ALICE).identities().create(userId=ALICE, body=identity).execute()
    moved = sandbox.admin("POST", "clock", {"advance_seconds": 86400})["now"]
    sandbox.server.stop()
    restarted = SandboxServer(sandbox.data_dir, port=sandbox.server.port).start()
    try:
        assert restarted.url == sandbox.server.url
        again = gmail(ALICE)
        listed = again.keypairs().list(userId=ALICE).execute()["cseKeyPairs"]
        assert [kp["keyPairId"] for kp in listed] == [created["keyPairId"]]
        assert again.identities().get(userId=ALICE, cseEmailAddress=ALICE).execute() == identity
        assert sandbox.admin("GET", "clock")["now"] >= moved
    finally:
        restarted.stop()
