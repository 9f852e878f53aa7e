"""One retry budget per step, waits that wake on stop, the Retry-After cap and the token
endpoint named when it fails: the Google client against the sandbox over HTTP and a closed
port."""

from __future__ import annotations

import json
import threading
import time

import pytest

from syncd.budget import RetryBudget, StopRequested, spending
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import GmailCSE
from syncd.google.retry import RetryPolicy
from tests.support.sandbox import DOMAIN, RunningSandbox

from ..daemon.conftest import free_port
from .conftest import FAST_RETRY

ALICE = f"alice@{DOMAIN}"
LIST = "gmail.users.settings.cse.keypairs.list"
TOKEN = "oauth2.token"


def test_a_step_budget_bounds_the_requests_whoever_retries(sandbox: RunningSandbox) -> None:
    client = GmailCSE(sandbox.google_config(), retry=FAST_RETRY)
    client.list_keypairs(ALICE)  # a token, before the faults
    sandbox.admin("POST", "faults", {"error_503": 1.0})
    budget = RetryBudget(retries=3, seconds=30.0)
    with spending(budget), pytest.raises(GoogleAPIError) as caught:
        client.list_keypairs(ALICE)  # FAST_RETRY alone would send 1 + 8
    assert sandbox.requests(LIST) == 1 + 1 + 3
    assert caught.value.retryable and caught.value.later
    assert "the step's retry budget is spent (3 retries)" in str(caught.value)
    # The budget is the step's, not the call's: a second call in the same step gets one try.
    with spending(budget), pytest.raises(GoogleAPIError):
        client.list_identities(ALICE)
    assert sandbox.requests("gmail.users.settings.cse.identities.list") == 1


def test_a_step_budget_bounds_the_time_to_give_up_on_a_closed_port(
    sandbox: RunningSandbox,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/"
    slow = RetryPolicy(max_retries=50, base_delay=0.4, max_delay=2.0)
    client = GmailCSE(sandbox.google_config(endpoint=closed), retry=slow)
    started = time.monotonic()
    with spending(RetryBudget(retries=50, seconds=1.5)), pytest.raises(GoogleAPIError) as caught:
        client.list_keypairs(ALICE)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 1.0, elapsed  # loosely: the budget plus the requests themselves
    assert "Gmail did not answer keypairs.list" in str(caught.value)
    assert "time budget (1.5s)" in str(caught.value)


def test_a_retry_after_over_the_cap_is_handed_back_at_once(sandbox: RunningSandbox) -> None:
    client = GmailCSE(sandbox.google_config(max_retry_after="5s"), retry=None)
    client.list_keypairs(ALICE)
    sandbox.admin("POST", "faults", {"error_429": 1.0, "retry_after_seconds": 300})
    started = time.monotonic()
    with pytest.raises(GoogleAPIError) as caught:
        client.list_keypairs(ALICE)
    assert time.monotonic() - started < 3.0
    assert sandbox.requests(LIST) == 2
    error = caught.value
    assert (error.status, error.retryable, error.later, error.retry_after) == (429, True, True, 300)
    assert "longer than google.max_retry_after (5s)" in str(error)


def test_a_stop_wakes_a_retry_after_wait(sandbox: RunningSandbox) -> None:
    client = GmailCSE(sandbox.google_config(), retry=None)
    client.list_keypairs(ALICE)
    sandbox.admin("POST", "faults", {"error_429": 1.0, "retry_after_seconds": 30})
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    budget = RetryBudget(retries=4, seconds=120.0, stop=stop)
    with spending(budget), pytest.raises(StopRequested):
        client.list_keypairs(ALICE)
    assert time.monotonic() - started < 3.0
    assert sandbox.requests(LIST) == 2


def test_a_closed_token_endpoint_is_named_as_such(sandbox: RunningSandbox) -> None:
    token_uri = f"http://127.0.0.1:{free_port()}/token"
    key = {**sandbox.key_info, "token_uri": token_uri}
    config = sandbox.google_config(service_account_key=json.dumps(key))
    with pytest.raises(GoogleAPIError) as caught:
        GmailCSE(config, retry=RetryPolicy(max_retries=1, base_delay=0.01)).list_keypairs(ALICE)
    message = str(caught.value)
    expected = f"Google's OAuth token endpoint {token_uri} did not answer ("
    assert message.startswith(expected), message
    assert f"no access token for {ALICE} (Gmail keypairs.list not sent)" in message
    assert "Gmail did not answer" not in message
    assert caught.value.retryable and not caught.value.outcome_unknown
    assert sandbox.requests(LIST) == 0


def test_a_token_endpoint_answering_503_is_named_and_asked_once_per_attempt(
    sandbox: RunningSandbox,
) -> None:
    sandbox.admin("POST", "faults", {"error_503": 1.0, "token_endpoint": True})
    client = GmailCSE(sandbox.google_config(), retry=RetryPolicy(max_retries=2, base_delay=0.01))
    with pytest.raises(GoogleAPIError) as caught:
        client.list_keypairs(ALICE)
    assert str(caught.value).startswith(
        f"Google's OAuth token endpoint {sandbox.key_info['token_uri']} answered with an error"
    ), caught.value
    # google-auth would try each token request three times, with sleeps of its own.
    assert sandbox.requests(TOKEN) == 1 + 2
    assert sandbox.requests(LIST) == 0
