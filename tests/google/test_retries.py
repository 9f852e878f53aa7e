"""Retries, backoff, Retry-After and the client-side rate limit, against injected faults."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from syncd.google.errors import GoogleAPIError, classify_http, parse_retry_after
from syncd.google.gmail import GmailCSE
from syncd.google.ratelimit import RateLimiter
from syncd.google.retry import RetryPolicy, backoff_delay
from tests.support.sandbox import DOMAIN, KACLS_URI, RunningSandbox, leaf_pkcs7
from tests.support.testca import TestHierarchy

from .conftest import FAST_RETRY

ALICE = f"alice@{DOMAIN}"
LIST = "gmail.users.settings.cse.keypairs.list"


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, max_retry_after=60.0)
    assert [backoff_delay(policy, n, None, 0.0) for n in range(5)] == [0.5, 1, 2, 4, 4]
    assert backoff_delay(policy, 2, None, 0.999) == pytest.approx(4.0, abs=0.01)
    assert backoff_delay(policy, 0, 30.0, 0.5) == 30.5
    assert backoff_delay(policy, 0, 600.0, 0.0) == 60.0


def test_retry_after_header_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_classification() -> None:
    body = (
        b'{"error": {"code": 403, "message": "slow down", "status": "PERMISSION_DENIED",'
        b' "errors": [{"reason": "userRateLimitExceeded"}]}}'
    )
    assert classify_http(403, body).retryable
    denied = body.replace(b"userRateLimitExceeded", b"forbidden")
    assert not classify_http(403, denied).retryable
    assert classify_http(503, b"<html>oops</html>", "Service Unavailable").retryable
    assert classify_http(400, b"{}", "Bad Request").reason == "BAD REQUEST"
    assert not classify_http(409, b"{}").retryable


def test_rate_limiter_spaces_calls_after_the_burst() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(10.0, burst=2, clock=lambda: now[0], sleep=sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([0.1, 0.2, 0.3])
    now[0] += 10
    assert limiter.acquire() == 0.0


def test_client_rate_limit_is_shared_across_threads(sandbox: RunningSandbox) -> None:
    client = GmailCSE(sandbox.google_config(requests_per_second=20.0), retry=FAST_RETRY)
    client.list_keypairs(ALICE)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: client.list_keypairs(ALICE), range(40)))
    assert time.monotonic() - started >= (40 - 20) / 20.0 * 0.9


def test_retries_succeed_through_injected_503s(sandbox: RunningSandbox, client: GmailCSE) -> None:
    sandbox.admin("POST", "faults", {"error_503": 0.5, "seed": 3})
    for _ in range(10):
        assert client.list_keypairs(ALICE) == []
    faults = sandbox.admin("GET", "stats")["methods"][LIST]["faults"]
    assert faults["503"] >= 3


def test_retry_after_is_honoured_and_exhaustion_reports_retryable(
    sandbox: RunningSandbox,
) -> None:
    slept: list[float] = []
    policy = RetryPolicy(max_retries=3, base_delay=0.01, max_retry_after=300)
    client = GmailCSE(sandbox.google_config(), retry=policy, sleep=slept.append)
    client.list_identities(ALICE)
    sandbox.admin("POST", "faults", {"error_429": 1.0, "retry_after_seconds": 2})
    with pytest.raises(GoogleAPIError) as caught:
        client.list_identities(ALICE)
    assert (caught.value.status, caught.value.reason, caught.value.retryable) == (
        429,
        "RESOURCE_EXHAUSTED",
        True,
    )
    assert len(slept) == 3 and all(2.0 <= s <= 2.01 for s in slept)
    assert sandbox.requests("gmail.users.settings.cse.identities.list") == 1 + 4


def test_rate_limit_403_is_retried(sandbox: RunningSandbox, client: GmailCSE) -> None:
    sandbox.admin("POST", "faults", {"error_403_rate_limit": 0.5, "seed": 1})
    for _ in range(6):
        client.list_identities(ALICE)
    stats = sandbox.admin("GET", "stats")["methods"]["gmail.users.settings.cse.identities.list"]
    assert stats["answers"]["403"] >= 2


def test_dropped_connections_are_retried(sandbox: RunningSandbox, client: GmailCSE) -> None:
    sandbox.admin("POST", "faults", {"drop": 0.4, "seed": 5})
    for _ in range(8):
        assert client.list_keypairs(ALICE) == []
    assert sandbox.admin("GET", "stats")["methods"][LIST]["faults"]["drop"] >= 2


def test_lost_answers_to_creates_make_no_duplicates(
    sandbox: RunningSandbox, client: GmailCSE, hierarchy: TestHierarchy
) -> None:
    sandbox.admin("POST", "faults", {"drop_after": 0.5, "seed": 11})
    for _ in range(6):
        created = client.create_keypair(ALICE, leaf_pkcs7(hierarchy, ALICE), KACLS_URI, "eA==")
        assert created["keyPairId"]
    sandbox.admin("POST", "faults", {})
    assert len(client.list_keypairs(ALICE)) == 6
    faults = sandbox.admin("GET", "stats")["methods"]
    assert faults["gmail.users.settings.cse.keypairs.create"]["faults"]["drop_after"] >= 2


def test_fifty_users_provisioned_through_503s_and_429s(
    sandbox: RunningSandbox, hierarchy: TestHierarchy
) -> None:
    patient = RetryPolicy(max_retries=12, base_delay=0.005, max_delay=0.05)
    client = GmailCSE(sandbox.google_config(), retry=patient)
    users = [f"user{i:03d}@{DOMAIN}" for i in range(50)]
    chains = {user: leaf_pkcs7(hierarchy, user) for user in users}
    sandbox.admin("POST", "faults", {"error_503": 0.3, "error_429": 0.1, "seed": 42})

    def provision(user: str) -> str:
        key_pair = client.create_keypair(user, chains[user], KACLS_URI, "eA==")
        client.create_identity(user, key_pair["keyPairId"])
        return str(key_pair["keyPairId"])

    with ThreadPoolExecutor(8) as pool:
        ids = dict(zip(users, pool.map(provision, users), strict=True))
    sandbox.admin("POST", "faults", {})
    for user in users:
        key_pairs = client.list_keypairs(user)
        assert [kp["keyPairId"] for kp in key_pairs] == [ids[user]]
        assert key_pairs[0]["enablementState"] == "enabled"
        assert key_pairs[0]["subjectEmailAddresses"] == [user]
        assert client.get_identity(user)["primaryKeyPairId"] == ids[user]
    methods = sandbox.admin("GET", "stats")["methods"]
    injected = methods["gmail.users.settings.cse.keypairs.create"]["faults"]
    assert injected.get("503", 0) >= 5 and injected.get("429", 0) >= 1


def test_rate_limiter_waits_run_side_by_side_not_under_its_lock() -> None:
    """Threads due at different times sleep at once: a limiter sleeping under its lock would
    hold the second sleeper until the first woke, and the barrier would break."""
    sleepers = 3
    barrier = threading.Barrier(sleepers, timeout=5)
    limiter = RateLimiter(1.0, burst=1, sleep=lambda seconds: barrier.wait())
    with ThreadPoolExecutor(sleepers + 1) as pool:
        waits = sorted(pool.map(lambda _: limiter.acquire(), range(sleepers + 1)))
    assert not barrier.broken
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([1.0, 2.0, 3.0], abs=0.2)
