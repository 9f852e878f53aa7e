"""Fault injection, the movable clock and the stats endpoint."""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError

from syncd.errors import ConfigError
from syncd.sandbox.faults import Fault, FaultSettings, choose_fault
from syncd.sandbox.server import SandboxServer
from tests.support.sandbox import DOMAIN, RunningSandbox, start_sandbox
from tests.support.testca import TestHierarchy

ALICE = f"alice@{DOMAIN}"
LIST = "gmail.users.settings.cse.keypairs.list"


def test_choose_fault_follows_the_fractions() -> None:
    settings = FaultSettings(error_429=0.1, error_503=0.3, drop=0.1)
    assert choose_fault(settings, 0.05) is Fault.TOO_MANY_REQUESTS
    assert choose_fault(settings, 0.2) is Fault.UNAVAILABLE
    assert choose_fault(settings, 0.45) is Fault.DROP
    assert choose_fault(settings, 0.5) is None
    with pytest.raises(ValueError, match="more than 1"):
        FaultSettings(error_500=0.6, error_503=0.6)


def test_every_request_503_with_retry_after(
    sandbox: RunningSandbox, gmail: Callable[..., Any]
) -> None:
    sandbox.admin("POST", "faults", {"error_503": 1.0, "retry_after_seconds": 7})
    with pytest.raises(HttpError) as caught:
        gmail(ALICE).keypairs().list(userId=ALICE).execute()
    assert caught.value.status_code == 503
    assert caught.value.resp["retry-after"] == "7"
    assert json.loads(caught.value.content)["error"]["status"] == "UNAVAILABLE"
    stats = sandbox.admin("GET", "stats")["methods"][LIST]
    assert stats == {"requests": 1, "answers": {"503": 1}, "faults": {"503": 1}}
    assert sandbox.admin("GET", "stats")["methods"]["oauth2.token"]["answers"] == {"200": 1}


def test_rate_limit_403_fault(sandbox: RunningSandbox, gmail: Callable[..., Any]) -> None:
    sandbox.admin("POST", "faults", {"error_403_rate_limit": 1.0})
    with pytest.raises(HttpError) as caught:
        gmail(ALICE).keypairs().list(userId=ALICE).execute()
    error = json.loads(caught.value.content)["error"]
    assert (error["code"], error["errors"][0]["reason"]) == (403, "userRateLimitExceeded")


def test_dropped_connection(sandbox: RunningSandbox, gmail: Callable[..., Any]) -> None:
    cse = gmail(ALICE)
    cse.keypairs().list(userId=ALICE).execute()
    sandbox.admin("POST", "faults", {"drop": 1.0})
    with pytest.raises((ConnectionError, httplib2.HttpLib2Error, OSError)):
        cse.keypairs().list(userId=ALICE).execute()
    assert sandbox.admin("GET", "stats")["methods"][LIST]["faults"]["drop"] >= 1


def test_latency(sandbox: RunningSandbox, gmail: Callable[..., Any]) -> None:
    cse = gmail(ALICE)
    cse.keypairs().list(userId=ALICE).execute()
    sandbox.admin("POST", "faults", {"latency_ms": 300})
    started = time.monotonic()
    cse.keypairs().list(userId=ALICE).execute()
    assert time.monotonic() - started >= 0.3


def test_bad_fault_settings_are_400(sandbox: RunningSandbox) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        sandbox.admin("POST", "faults", {"error_503": 2})
    assert caught.value.code == 400
    assert sandbox.admin("GET", "faults")["error_503"] == 0.0


def test_token_endpoint_spared_unless_asked(
    sandbox: RunningSandbox, gmail: Callable[..., Any]
) -> None:
    sandbox.admin("POST", "faults", {"error_500": 1.0})
    with pytest.raises(HttpError):
        gmail(ALICE).keypairs().list(userId=ALICE).execute()
    assert sandbox.admin("GET", "stats")["methods"]["oauth2.token"]["answers"] == {"200": 1}


def test_faults_file_applies_at_start(tmp_path: Path, hierarchy: TestHierarchy) -> None:
    running = start_sandbox(tmp_path / "data", hierarchy)
    running.stop()
    (tmp_path / "data" / "faults.yaml").write_text("error_429: 0.25\nlatency_ms: 5\n")
    server = SandboxServer(tmp_path / "data").start()
    try:
        settings = json.loads(httplib2.Http().request(server.url + "sandbox/v1/faults")[1])
        assert settings["error_429"] == 0.25 and settings["latency_ms"] == 5
    finally:
        server.stop()
    (tmp_path / "data" / "faults.yaml").write_text("error_429: 3\n")
    with pytest.raises(ConfigError, match="faults"):
        SandboxServer(tmp_path / "data")


def test_clock_moves_forward_only(sandbox: RunningSandbox) -> None:
    before = sandbox.admin("GET", "clock")["now"]
    after = sandbox.admin("POST", "clock", {"advance_seconds": 86400 * 31})["now"]
    assert after[:10] > before[:10]
    with pytest.raises(urllib.error.HTTPError):
        sandbox.admin("POST", "clock", {"advance_seconds": -5})


def test_stats_reset(sandbox: RunningSandbox, gmail: Callable[..., Any]) -> None:
    gmail(ALICE).keypairs().list(userId=ALICE).execute()
    assert sandbox.requests(LIST) == 1
    sandbox.admin("POST", "stats:reset")
    assert sandbox.requests(LIST) == 0
