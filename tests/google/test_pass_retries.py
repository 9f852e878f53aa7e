"""One retry budget per step in real passes: the requests a failing step sends and the time a
pass takes to give up on a user, against the sandbox and a closed port."""

from __future__ import annotations

import time

import pytest

from syncd.app.passes import sync_pass

from ..daemon.conftest import free_port
from ..pipeline.conftest import Deployment, deployment, pipeline_ca, sandbox_users

__all__ = ["deployment", "pipeline_ca"]

SQLITE_ONLY = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)


def _gmail_requests(deploy: Deployment) -> int:
    methods = deploy.admin("GET", "stats")["methods"]
    return sum(int(m.get("requests", 0)) for name, m in methods.items() if name.startswith("gmail"))


@SQLITE_ONLY
def test_a_failing_step_sends_its_budget_and_no_more(deployment: Deployment) -> None:
    deployment.set_users(sandbox_users(2))
    # replace: no identity lookup (check_existing) before the key is made, so the first step
    # to reach Gmail is upload_keypair, a write; in the default mode (hold) one identities.get
    # per first provisioning comes first, with the same budget.
    deployment.update_config(
        pipeline={"step_attempts": 4, "step_retries": 2},
        policy={"existing_credentials": "replace"},
    )
    deployment.admin("POST", "faults", {"error_503": 1.0})
    result = sync_pass(deployment.app())
    assert [r.failed_step for r in result.results] == ["upload_keypair"] * 2
    # Before: the runner's 4 attempts of the step times the client's 1 + 6 requests each.
    assert _gmail_requests(deployment) == 2 * (1 + 2)
    error = result.results[0].error or ""
    assert "503" in error and "the step's retry budget is spent (2 retries)" in error


@SQLITE_ONLY
def test_a_closed_endpoint_gives_up_within_the_time_budget(deployment: Deployment) -> None:
    deployment.set_users(sandbox_users(1))
    deployment.update_config(
        google={"endpoint": f"http://127.0.0.1:{free_port()}/"},
        pipeline={"step_attempts": 5, "step_retries": 50, "step_time_limit": "2s"},
        policy={"existing_credentials": "replace"},  # upload_keypair first reaches Gmail
    )
    app = deployment.app()
    started = time.monotonic()
    result = sync_pass(app)
    elapsed = time.monotonic() - started
    [task] = result.results
    assert task.failed_step == "upload_keypair" and not task.ok
    assert "Gmail did not answer keypairs.create" in (task.error or ""), task.error
    assert "time budget (2s)" in (task.error or "")
    # Loosely: the step's 2 s, plus key generation, certificate and bookkeeping.
    assert elapsed < 2 + 3, elapsed
