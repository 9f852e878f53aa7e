"""Crash safety: the sync process is killed with SIGKILL at every point of every step (before
the external call, after it but before the commit, after the commit), restarted, and in the
end every user has exactly one key pair uploaded, enabled and in their identity, and every
KMS key is accounted for by a key pair generation.

The sweep runs with the embedded KMS (accounted in its key table, on SQLite and PostgreSQL)
and with ``kms.backend: kmip`` against a real PyKMIP server (accounted in the server itself,
listed with PyKMIP's own client): a key created in the KMS whose id the crash kept from the
store is found there by its label on resume, never created twice, never orphaned."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from sqlalchemy import select

from syncd.pipeline.steps import PIPELINES
from syncd.state.db import Database
from syncd.state.models import AuditEvent, KeyPair, KmsKey, KmsKeyState
from tests.kmip.inventory import by_name, held_objects
from tests.kmip.server import PyKmipServer

from .conftest import Deployment, gmail_state, sandbox_users

PHASES = ("before", "after", "committed")


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


def test_sigkill_sweep_with_an_external_kms(
    kmip_deployment: Deployment, kmip_server: PyKmipServer
) -> None:
    swept = sigkill_sweep(kmip_deployment, users_per_point=1)

    # Everything the server holds (it is this test's own), as PyKMIP's client lists it.
    held = held_objects(kmip_server)
    private_keys = by_name(held, "private_key")
    public_keys = by_name(held, "public_key")
    assert {name for obj in held for name in obj.names} == {
        "issuer:pipeline",
        *swept.generations.values(),
    }, "objects in the KMS that neither the issuer nor a key pair generation accounts for"
    user_labels = {name for name in private_keys if name.startswith("syncd:")}
    assert user_labels == set(swept.generations.values())
    for label in user_labels:  # never created twice for a label
        assert len(private_keys[label]) == 1, f"{label}: {len(private_keys[label])} private keys"
        assert len(public_keys[label]) == 1, f"{label}: {len(public_keys[label])} public keys"
    # Each one is the key its generation recorded: none orphaned.
    recorded = {private_keys[label][0].uid: label for label in user_labels}
    assert recorded == swept.generations
    assert len(swept.generations) == len(swept.listed)

    states = {label: private_keys[label][0].state for label in user_labels}
    leavers = {f"syncd:{email}:" for email in swept.leaving}
    revoked = {label for label, state in states.items() if state == "deactivated"}
    assert {label for label in revoked if not label.startswith(tuple(leavers))} == set()
    assert len(revoked) == len(swept.leaving), states
    staying = {label: state for label, state in states.items() if label not in revoked}
    assert set(staying.values()) == {"active"}, states
