"""Crash safety: the sync process is killed with SIGKILL at every point of every step (before
the external call, after it but before the commit, after the commit), restarted, and in the
end every user has exactly one key pair uploaded, enabled and in their identity, and every
KMS key is accounted for by a key pair generation.

Here with the embedded KMS, accounted in its key table, on SQLite and PostgreSQL; the same sweep
with an external KMS is in test_crash_safety_kmip.py (its own file, so that pytest-xdist can
run the two on different workers)."""

from __future__ import annotations

import signal
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from syncd.pipeline.steps import PIPELINES
from syncd.state.db import Database
from syncd.state.models import AuditEvent, KeyPair, KmsKey, KmsKeyState

from .conftest import Deployment, gmail_state, sandbox_users

PHASES = ("before", "after", "committed")

SWEEP_TIMEOUT = 600
"""Seconds for a whole sweep: some 25 ``syncd`` processes one after another (each with a
timeout of its own), about a minute on an idle 2-core machine but over the default 180 s when
the machine is shared; a hung server still fails each process after its own timeout."""


@dataclass(frozen=True)
class Swept:
    listed: list[str]
    """Everyone the sweep provisioned."""
    leaving: list[str]
    """Those it then deprovisioned."""
    generations: dict[str, str]
    """kms_private_key_id -> kms_label of every key pair generation the store records."""


def sigkill_sweep(deployment: Deployment, users_per_point: int) -> Swept:
    """Provision ``users_per_point`` more users at each provision crash point, then take one
    user out at each deprovision crash point; after each crash, the next pass resumes. Checks
    what Gmail holds and that a pass after the last writes nothing."""
    deployment.update_config(policy={"max_deprovision": "100%", "deprovision_after": 0})
    everyone = sandbox_users(40)
    provision_points = [f"{p}:{s}" for s in PIPELINES["provision"] for p in PHASES]
    deprovision_points = [f"{p}:{s}" for s in PIPELINES["deprovision"] for p in PHASES]

    listed: list[str] = []
    for number, point in enumerate(provision_points):
        listed += everyone[users_per_point * number : users_per_point * (number + 1)]
        deployment.set_users(listed)
        crashed = deployment.syncd("sync", "--once", crash_at=point)
        assert crashed.returncode == -signal.SIGKILL, (point, crashed.stderr)

    assert deployment.syncd("sync", "--once").returncode == 0
    leaving = listed[: len(deprovision_points)]
    for number, point in enumerate(deprovision_points):
        deployment.set_users(listed[number + 1 :])
        crashed = deployment.syncd("sync", "--once", crash_at=point)
        assert crashed.returncode == -signal.SIGKILL, (point, crashed.stderr)

    final = deployment.syncd("sync", "--once")
    assert final.returncode == 0, final.stderr
    staying = listed[len(deprovision_points) :]
    assert staying

    for email in staying:
        keypairs, identity = gmail_state(deployment, email)
        assert len(keypairs) == 1, f"{email}: {len(keypairs)} key pairs uploaded"
        assert keypairs[0]["enablementState"] == "enabled"
        assert identity is not None and identity["primaryKeyPairId"] == keypairs[0]["keyPairId"]
    for email in leaving:
        keypairs, identity = gmail_state(deployment, email)
        assert identity is None, email
        assert len(keypairs) == 1 and keypairs[0]["enablementState"] == "disabled", email

    database = Database.open(deployment.config.state.url)
    with database.sessions() as session:
        generations = {
            kp.kms_private_key_id: kp.kms_label
            for kp in session.scalars(select(KeyPair))
            if kp.kms_private_key_id is not None
        }
        created = [
            event.detail
            for event in session.scalars(
                select(AuditEvent).where(AuditEvent.action == "provision.create_key")
            )
        ]
    database.close()
    # The crash after:create_key left a key in the KMS that the store did not record: the
    # resumed pass found it by its label instead of making another.
    assert any(detail.get("found") for detail in created), created

    again = deployment.writes()
    assert deployment.syncd("sync", "--once").returncode == 0
    assert deployment.writes() == again
    return Swept(listed, leaving, generations)


@pytest.mark.timeout(SWEEP_TIMEOUT)
def test_sigkill_at_every_step_boundary_then_resume(deployment: Deployment) -> None:
    swept = sigkill_sweep(deployment, users_per_point=2)

    database = Database.open(deployment.config.state.url)
    with database.sessions() as session:
        user_keys = {
            key.id: key.state
            for key in session.scalars(select(KmsKey).where(KmsKey.label.like("syncd:%")))
        }
    database.close()
    assert set(user_keys) == set(swept.generations), "KMS keys no key pair generation accounts for"
    assert len(swept.generations) == len(swept.listed)
    revoked = [key for key, state in user_keys.items() if state is KmsKeyState.REVOKED]
    assert len(revoked) == len(swept.leaving)
