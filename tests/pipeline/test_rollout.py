"""A first deployment rolled out a few users a pass (``policy.max_new_per_pass``), the org
units of ``policy.rollout_order`` first, end to end.

Real passes (``syncd sync --once``) against the sandbox over HTTP, the embedded KMS, a SQLite
store (the store's two engines are covered by test_sync.py), the static source with an
``org_unit`` per user; who has credentials is read back from the sandbox's Gmail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from syncd.state.db import Database
from syncd.state.models import Run
from tests.support.testca import TestHierarchy

from .conftest import Deployment, build_deployment, gmail_state, import_pipeline_issuer
from .test_sync import assert_provisioned

UNITS = {
    "user00@example.com": "/Sales",
    "user01@example.com": "/Pilot",
    "user02@example.com": "/IT",
    "user03@example.com": "/Pilot/Team 1",
    "user04@example.com": "/Sales/EMEA",
    "user05@example.com": "/IT",
}
ORDER = ["/Pilot", "/IT"]
WAVES = [
    {"user01@example.com", "user03@example.com"},  # /Pilot and the unit under it
    {"user02@example.com", "user05@example.com"},  # /IT
    {"user00@example.com", "user04@example.com"},  # everyone else
]


@pytest.fixture
def deployment(tmp_path: Path, pipeline_ca: TestHierarchy) -> Iterator[Deployment]:
    from tests.conftest import _migrate

    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    deploy = build_deployment(tmp_path, url, pipeline_ca)
    try:
        import_pipeline_issuer(deploy, pipeline_ca)
        yield deploy
    finally:
        deploy.sandbox.stop()


def _plan(deploy: Deployment) -> dict[str, Any]:
    shown = deploy.syncd("plan", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    plan: dict[str, Any] = json.loads(shown.stdout)["plan"]
    return plan


def _with_credentials(deploy: Deployment) -> set[str]:
    """The users Gmail holds an identity for (the sandbox's own state)."""
    return {email for email in UNITS if gmail_state(deploy, email)[1] is not None}


def test_passes_provision_two_new_users_each_pilot_first_then_it_then_everyone(
    deployment: Deployment,
) -> None:
    users = [{"email": e, "id": f"id-{e}", "org_unit": unit} for e, unit in UNITS.items()]
    deployment.users_file.write_text(yaml.safe_dump({"users": users}))
    deployment.update_config(policy={"max_new_per_pass": 2, "rollout_order": ORDER})

    text_plan = deployment.syncd("plan")
    assert text_plan.returncode == 0, text_plan.stderr
    assert (
        "2 of 6 new users provisioned this pass, 4 deferred (policy.max_new_per_pass: 2)"
        in text_plan.stdout
    )

    done: set[str] = set()
    for number, wave in enumerate(WAVES):
        left = len(UNITS) - len(done)
        plan = _plan(deployment)
        assert plan["rollout"] == {
            "new": left,
            "this_pass": 2,
            "deferred": left - 2,
            "max_new_per_pass": "2",
            "order": ORDER,
        }
        assert {a["email"] for a in plan["actions"]} == wave
        expected_code = "new_in_scope" if number == 0 else "no_credential"
        assert {(a["action"], a["code"]) for a in plan["actions"]} == {("provision", expected_code)}
        assert plan["held"] == []

        passed = deployment.syncd("sync", "--once")
        assert passed.returncode == 0, passed.stderr
        assert "2 done, 0 failed" in passed.stdout
        if left > 2:
            assert f"{left - 2:,} new users deferred" in passed.stdout
        else:
            assert "deferred" not in passed.stdout
        done |= wave
        assert _with_credentials(deployment) == done
        for email in wave:
            assert_provisioned(deployment, email)

    finished = _plan(deployment)
    assert finished["actions"] == [] and finished["rollout"]["deferred"] == 0
    assert _recorded_summaries(deployment) == [
        (4, {"provision": 2}),
        (2, {"provision": 2}),
        (0, {"provision": 2}),
    ]


def _recorded_summaries(deploy: Deployment) -> list[tuple[int, dict[str, int]]]:
    """(deferred_new, planned) each sync pass recorded in the state store."""
    database = Database.open(deploy.config.state.url)
    with database.sessions() as session:
        runs = list(session.scalars(select(Run).where(Run.kind == "sync").order_by(Run.id)))
        found = [(run.summary["deferred_new"], run.summary["planned"]) for run in runs]
    database.close()
    return found
