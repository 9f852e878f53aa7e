"""GmailCSE against the sandbox over HTTP: operations, error mapping, paging."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from syncd.errors import ConfigError
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import GmailCSE, keypair_fingerprint
from syncd.pki.chain import fingerprint, parse_pkcs7
from tests.support.sandbox import DOMAIN, KACLS_URI, RunningSandbox, leaf_pkcs7
from tests.support.testca import TestHierarchy, make_test_hierarchy

from .conftest import FAST_RETRY

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
CREATE = "gmail.users.settings.cse.keypairs.create"


def test_provision_leaves_an_enabled_key_pair_and_identity(
    client: GmailCSE, hierarchy: TestHierarchy
) -> None:
    pkcs7 = leaf_pkcs7(hierarchy, ALICE)
    created = client.create_keypair(ALICE, pkcs7, KACLS_URI, "a2FjbHM=")
    identity = client.create_identity(ALICE, created["keyPairId"])
    assert identity == {"emailAddress": ALICE, "primaryKeyPairId": created["keyPairId"]}
    fetched = client.get_keypair(ALICE, created["keyPairId"])
    assert fetched["enablementState"] == "enabled"
    assert fetched["subjectEmailAddresses"] == [ALICE]
    assert client.get_identity(ALICE)["primaryKeyPairId"] == created["keyPairId"]
    leaf = fingerprint(parse_pkcs7(pkcs7)[0])
    assert keypair_fingerprint(fetched) == leaf
    assert client.find_keypair(ALICE, leaf) == fetched


def test_identity_for_another_users_key_pair_is_refused(
    client: GmailCSE, hierarchy: TestHierarchy
) -> None:
    bobs = client.create_keypair(BOB, leaf_pkcs7(hierarchy, BOB), KACLS_URI, "eA==")
    with pytest.raises(GoogleAPIError) as caught:
        client.create_identity(ALICE, bobs["keyPairId"])
    error = caught.value
    assert (error.status, error.reason, error.user, error.retryable) == (
        400,
        "INVALID_ARGUMENT",
        ALICE,
        False,
    )
    assert str(error).startswith(
        f"Gmail refused identities.create for {ALICE}: 400 INVALID_ARGUMENT: "
    )


def test_bad_chain_becomes_a_clear_error_without_retries(
    sandbox: RunningSandbox, client: GmailCSE
) -> None:
    untrusted = make_test_hierarchy(organization="Elsewhere")
    with pytest.raises(GoogleAPIError) as caught:
        client.create_keypair(ALICE, leaf_pkcs7(untrusted, ALICE), KACLS_URI, "eA==")
    message = str(caught.value)
    assert message.startswith(
        f"Gmail refused keypairs.create for {ALICE}: 400 INVALID_ARGUMENT: "
        "Certificate chain validation failed: "
    )
    assert "\n" not in message
    assert caught.value.retryable is False
    assert sandbox.requests(CREATE) == 1


def test_lifecycle_with_paging_and_obliterate(
    sandbox: RunningSandbox, client: GmailCSE, hierarchy: TestHierarchy
) -> None:
    ids = [
        client.create_keypair(ALICE, leaf_pkcs7(hierarchy, ALICE), KACLS_URI, "eA==")["keyPairId"]
        for _ in range(7)
    ]
    assert [kp["keyPairId"] for kp in client.list_keypairs(ALICE)] == ids
    assert sandbox.requests("gmail.users.settings.cse.keypairs.list") == 3
    client.create_identity(ALICE, ids[0])
    assert client.patch_identity(ALICE, ids[1])["primaryKeyPairId"] == ids[1]
    assert client.list_identities(ALICE) == [{"emailAddress": ALICE, "primaryKeyPairId": ids[1]}]
    client.delete_identity(ALICE)
    assert client.list_identities(ALICE) == []
    disabled = client.disable_keypair(ALICE, ids[0])
    assert disabled["enablementState"] == "disabled" and disabled["disableTime"]
    with pytest.raises(GoogleAPIError) as caught:
        client.obliterate_keypair(ALICE, ids[0])
    assert (caught.value.status, caught.value.reason) == (400, "FAILED_PRECONDITION")
    sandbox.admin("POST", "clock", {"advance_seconds": 31 * 86400})
    client.obliterate_keypair(ALICE, ids[0])
    assert ids[0] not in [kp["keyPairId"] for kp in client.list_keypairs(ALICE)]
    assert client.enable_keypair(ALICE, ids[2])["enablementState"] == "enabled"
    with pytest.raises(GoogleAPIError) as missing:
        client.get_keypair(ALICE, ids[0])
    assert missing.value.status == 404


def test_uploading_the_same_certificate_twice_returns_the_existing_key_pair(
    sandbox: RunningSandbox, client: GmailCSE, hierarchy: TestHierarchy
) -> None:
    pkcs7 = leaf_pkcs7(hierarchy, ALICE)
    first = client.create_keypair(ALICE, pkcs7, KACLS_URI, "eA==")
    again = client.create_keypair(ALICE, pkcs7, KACLS_URI, "eA==")
    assert again == first
    assert len(client.list_keypairs(ALICE)) == 1
    assert sandbox.admin("GET", "stats")["methods"][CREATE]["answers"] == {"200": 1, "409": 1}


def test_wrong_service_account_key_is_a_token_error(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = dict(sandbox.key_info)
    forged["private_key"] = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(forged))
    key_file.chmod(0o600)
    cfg = sandbox.google_config(service_account_key=None, service_account_key_file=key_file)
    with pytest.raises(GoogleAPIError) as caught:
        GmailCSE(cfg, retry=FAST_RETRY).list_keypairs(ALICE)
    assert caught.value.reason == "invalid_grant"
    assert caught.value.retryable is False
    assert str(caught.value) == (
        f"Google refused an access token for {ALICE} (keypairs.list): "
        "invalid_grant: Invalid JWT Signature."
    )
    assert "PRIVATE KEY" not in str(caught.value)


def test_missing_or_broken_key_is_a_config_error(sandbox: RunningSandbox) -> None:
    with pytest.raises(ConfigError, match="no service account key"):
        GmailCSE(sandbox.google_config(service_account_key=None))
    with pytest.raises(ConfigError, match="not JSON"):
        GmailCSE(sandbox.google_config(service_account_key="{not json"))
    broken = dict(sandbox.key_info, private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(ConfigError, match="private_key cannot be read"):
        GmailCSE(sandbox.google_config(service_account_key=json.dumps(broken)))


def test_threads_use_their_own_http_objects(client: GmailCSE) -> None:
    seen: list[object] = []

    def work() -> None:
        client.list_keypairs(ALICE)
        seen.append(client.session._thread_parts()[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(http) for http in seen}) == 4


def test_calls_from_many_threads_wait_on_a_slow_google_side_by_side(
    sandbox: RunningSandbox, client: GmailCSE
) -> None:
    """With 300 ms injected on every call, 16 threads' calls overlap: sharing one connection
    or a lock held across the request would take 16 x 300 ms."""
    threads, latency = 16, 0.3
    users = [f"user{i:03d}@{DOMAIN}" for i in range(threads)]
    sandbox.admin("POST", "faults", {"latency_ms": latency * 1000})
    sandbox.admin("POST", "stats:reset")
    barrier = threading.Barrier(threads, timeout=10)

    def work(user: str) -> object:
        barrier.wait()
        assert client.list_keypairs(user) == []
        return client.session._thread_parts()[0]

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        https = list(pool.map(work, users))
    elapsed = time.monotonic() - started
    assert sandbox.requests("gmail.users.settings.cse.keypairs.list") == threads
    assert len({id(http) for http in https}) == threads
    assert latency <= elapsed < threads * latency / 2
