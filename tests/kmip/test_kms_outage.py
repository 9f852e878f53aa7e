"""A KMIP server outage in the middle of a pass (every session cut, new ones dropped): the
steps that need the KMS are retried within their budget, then their tasks fail for a later
pass (not permanently), each with the KMS's one-line message; no user is left half-done in
Gmail; the next pass, with the KMS back, resumes every task, and no key is made twice (what
the server holds is counted with PyKMIP's own client)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kmip.core import enums
from sqlalchemy import select

from syncd.app.context import App
from syncd.app.passes import sync_pass
from syncd.credentials.issuers import import_issuer
from syncd.state.models import KeyPair, Task, TaskStatus, User
from tests.conftest import _migrate
from tests.kmip.relay import Relay
from tests.kmip.server import PyKmipServer
from tests.kmip.test_kmip_commands import pykmip_client
from tests.pipeline.conftest import (  # noqa: F401  (fixtures used by this module)
    P12_PASSWORD,
    Deployment,
    deployment,
    gmail_state,
    pipeline_ca,
    sandbox_users,
)


@pytest.fixture
def migrated_db_url(tmp_path: Path) -> str:
    """SQLite only: the outage concerns the KMS, not the store."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    return url


def test_kms_outage_mid_pass_then_resume(
    deployment: Deployment,  # noqa: F811
    pykmip_server: PyKmipServer,
) -> None:
    deploy, server = deployment, pykmip_server
    relay = Relay(server.host, server.port)
    deploy.update_config(
        kms={
            "backend": "kmip",
            "kmip": server.kmip_section(port=relay.port, timeout=3),
        },
        pipeline={"workers": 2, "step_attempts": 3, "retry_initial": "1s"},
    )
    hierarchy = deploy.hierarchy
    assert hierarchy.issuer_p12 is not None and hierarchy.root_pem is not None
    app = App(deploy.config)
    import_issuer(
        app.database.sessions,
        app.key_manager(),
        label="pipeline",
        pkcs12_data=hierarchy.issuer_p12.read_bytes(),
        password=P12_PASSWORD,
        extra_chain_pem=hierarchy.root_pem.read_bytes(),
        now=datetime.now(UTC),
        where="issuer.p12",
        replace=True,
    )
    users = sandbox_users(6)
    done_steps: list[str] = []
    mutex = threading.Lock()

    def outage_after_two_keys(step: str, seconds: float, error: BaseException | None) -> None:
        with mutex:
            if error is None:
                done_steps.append(step)
            if step == "create_key" and done_steps.count("create_key") == 2:
                relay.drop_requests = True
                relay.cut()

    try:
        first = sync_pass(App(deploy.config), on_step=outage_after_two_keys)
        assert first.failures, "the outage failed no task"
        for failure in first.failures:
            assert failure.error is not None and f"KMIP server {server.host}:" in failure.error
        with app.database.sessions() as session:
            failed = session.scalars(select(Task).where(Task.status == TaskStatus.FAILED)).all()
            assert failed and not any(task.permanent for task in failed)
        for email in users:  # nothing half-done in Gmail: a key pair only with its identity
            keypairs, identity = gmail_state(deploy, email)
            if keypairs:
                [keypair] = keypairs
                assert identity is not None
                assert identity["primaryKeyPairId"] == keypair["keyPairId"]
            else:
                assert identity is None

        relay.drop_requests = False
        time.sleep(1.2)  # pipeline.retry_initial
        second = sync_pass(App(deploy.config))
        assert second.clean, [r.error for r in second.failures]
    finally:
        relay.close()

    with app.database.sessions() as session:
        rows = session.execute(select(User.email, KeyPair).join(KeyPair)).all()
    assert sorted(email for email, _ in rows) == sorted(users)  # one generation each
    with pykmip_client(server) as client:
        for email, row in rows:
            keypairs, identity = gmail_state(deploy, email)
            assert len(keypairs) == 1 and identity is not None
            assert identity["primaryKeyPairId"] == keypairs[0]["keyPairId"] == row.gmail_key_pair_id
            held = {
                name: client.locate(
                    attributes=[
                        client.attribute_factory.create_attribute(enums.AttributeType.NAME, name)
                    ]
                )
                for name in (row.kms_label, f"{row.kms_label}.pub")  # the private, public half
            }
            assert held[row.kms_label] == [row.kms_private_key_id], f"{email}: {held}"
            assert held[f"{row.kms_label}.pub"] == [row.kms_public_key_id], f"{email}: {held}"
    app.database.close()
