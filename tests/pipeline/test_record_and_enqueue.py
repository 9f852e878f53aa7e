"""A pass records the directory snapshot and enqueues its plan's tasks in one transaction.
Recording applies a reassigned address's new directory id (and a rename's new address), after
which the next plan no longer sees the change: a pass that failed between the two would have
left the new person at the address with the old person's credential for good."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

import syncd.pipeline.sync as sync_module
from syncd.app.passes import dry_run, sync_pass
from syncd.domain import ActionKind

from .conftest import Deployment, sandbox_users


def test_a_reassignment_is_planned_again_after_a_pass_that_failed_to_enqueue_it(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    [email] = sandbox_users(1)
    deployment.set_users([email])
    deployment.update_config(policy={"max_deprovision": "100%"})  # one user of one
    app = deployment.app()
    try:
        assert not sync_pass(app).failures
    finally:
        app.close()
    # Another person gets the address: same email, another directory id.
    deployment.users_file.write_text(
        yaml.safe_dump({"users": [{"email": email, "id": "id-someone-else", "enabled": True}]})
    )

    def failing_enqueue(*args: Any, **kwargs: Any) -> list[int]:
        raise RuntimeError("the state store failed while enqueuing")

    monkeypatch.setattr(sync_module, "enqueue", failing_enqueue)
    app = deployment.app()
    try:
        with pytest.raises(RuntimeError, match="while enqueuing"):
            sync_pass(app)
        monkeypatch.undo()
        planned = [(a.email, a.kind) for a in dry_run(app).plan.actions]
    finally:
        app.close()
    assert planned == [(email, ActionKind.REASSIGN)]
