"""The state store's session ended by PostgreSQL in the middle of a pass, at a chosen statement.

Just before the statement runs, the test ends the very session it is about to run on
(``pg_terminate_backend``, what a server restart, a failover or an administrator does), so
the driver gets the server's real error. A checkpoint that is cut leaves its task at the
previous checkpoint for the next attempt; a cut inside a step is retried within the step; the
pass goes on with the other users either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from syncd.app.passes import sync_pass
from syncd.state.db import Database
from syncd.state.models import KeyPair, KmsKey
from tests.conftest import admin_connection

from .conftest import Deployment, gmail_state, sandbox_users

Matcher = Callable[[str, Any], bool]


def _cut_once(engine: Engine, url: str, matches: Matcher) -> list[str]:
    """Before the first statement ``matches``, end the session it is about to run on and
    wait until the server has ended it; returns the statements cut (one, once it happened)."""
    cut: list[str] = []
    guard = threading.Lock()

    def before(connection: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        with guard:
            if cut or not matches(statement, parameters):
                return
            cut.append(statement)
        pid = connection.connection.dbapi_connection.info.backend_pid
        with admin_connection(url) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                assert time.monotonic() < deadline, "the server did not end the session"
                time.sleep(0.02)

    event.listen(engine, "before_cursor_execute", before)
    return cut


def _checkpoint_of(step: str) -> Matcher:
    def matches(statement: str, parameters: Any) -> bool:
        return (
            statement.startswith("UPDATE tasks")
            and isinstance(parameters, Mapping)
            and parameters.get("step") == step
        )

    return matches


def _assert_one_credential_each(deploy: Deployment, emails: list[str]) -> None:
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            pairs = session.scalars(select(KeyPair)).all()
            kms_keys = session.scalars(
                select(KmsKey.id).where(KmsKey.label.like("syncd:user%"))
            ).all()
    finally:
        database.close()
    assert len(pairs) == len(emails)
    assert set(kms_keys) == {p.kms_private_key_id for p in pairs}  # no orphan KMS key
    recorded = {p.gmail_key_pair_id for p in pairs}
    for email in emails:
        keypairs, identity = gmail_state(deploy, email)
        assert len(keypairs) == 1, email
        assert identity is not None and identity["primaryKeyPairId"] == keypairs[0]["keyPairId"]
        assert keypairs[0]["keyPairId"] in recorded


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
def test_a_cut_checkpoint_fails_that_user_alone_and_the_next_pass_finishes_it(
    deployment: Deployment,
) -> None:
    emails = sandbox_users(4)
    deployment.set_users(emails)
    app = deployment.app()
    cut = _cut_once(
        app.database.engine, deployment.config.state.url, _checkpoint_of("upload_keypair")
    )
    first = sync_pass(app)
    app.database.close()
    assert len(cut) == 1
    [failure] = first.failures
    assert failure.failed_step == "upload_keypair"
    assert "not recorded" in (failure.error or "") and "administrator command" in (
        failure.error or ""
    )
    assert {r.email for r in first.results if r.ok} == set(emails) - {failure.email}
    # The key pair reached Gmail; the next pass finds it instead of uploading another.
    app = deployment.app()
    second = sync_pass(app)
    app.database.close()
    assert [r.email for r in second.results if r.ok] == [failure.email]
    assert not second.failures
    _assert_one_credential_each(deployment, emails)


def test_a_shared_pass_resumes_a_cut_checkpoint_itself(shared: Deployment) -> None:
    emails = sandbox_users(4)
    shared.set_users(emails)
    app = shared.app()
    cut = _cut_once(app.database.engine, shared.config.state.url, _checkpoint_of("insert_identity"))
    result = sync_pass(app)
    app.database.close()
    assert len(cut) == 1
    [failure] = result.failures
    assert failure.failed_step == "insert_identity" and "not recorded" in (failure.error or "")
    # Released at its checkpoint, the task was claimed again and finished in the same pass.
    assert {r.email for r in result.results if r.ok} == set(emails)
    _assert_one_credential_each(shared, emails)


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
def test_a_cut_inside_a_step_is_retried_within_the_step(deployment: Deployment) -> None:
    """The embedded KMS stores a new key in the state store: that write is cut."""
    emails = sandbox_users(3)
    deployment.set_users(emails)
    app = deployment.app()
    cut = _cut_once(
        app.database.engine,
        deployment.config.state.url,
        lambda statement, _: statement.startswith("INSERT INTO kms_keys"),
    )
    result = sync_pass(app)
    app.database.close()
    assert len(cut) == 1
    assert not result.failures
    assert {r.email for r in result.results if r.ok} == set(emails)
    _assert_one_credential_each(deployment, emails)
