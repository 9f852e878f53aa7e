"""A pass checks the KMS before it takes the run lock; KMS failures during steps: unavailable
is retried within the step's budget, refused fails the task permanently with that reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from syncd.app.context import App
from syncd.app.passes import sync_pass
from syncd.config import Config
from syncd.errors import KMSRefusedError, KMSUnavailableError
from syncd.kms import KeyManager, KeyRef, Keyring, open_key_manager
from syncd.kms.base import PrivateKeyFormat
from syncd.kms.kacls import load_wrapping_key
from syncd.kms.local import LocalKeyManager, load_master_key
from syncd.state.models import Base, Issuer, RunLockState, Task
from tests.conftest import _migrate

from .conftest import Deployment, sandbox_users


@pytest.fixture
def migrated_db_url(tmp_path: Path) -> str:
    """SQLite only: these concern the KMS, not the state store (the pipeline's other tests
    run on both stores)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    return url


def _row_counts(deploy: Deployment) -> dict[str, int]:
    app = deploy.app()
    with app.database.sessions() as session:
        counts = {
            name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in Base.metadata.tables.items()
        }
        counts["run_lock.token"] = int(
            session.scalar(select(func.coalesce(func.max(RunLockState.token), 0))) or 0
        )
    app.database.close()
    return counts


def test_unknown_issuer_key_stops_the_pass_before_anything_is_written(
    deployment: Deployment,
) -> None:
    assert deployment.syncd("sync", "--once").returncode == 0  # the lock has been taken once
    app = deployment.app()
    with app.database.transaction() as session:
        session.execute(update(Issuer).values(kms_private_key_id="no-such-key"))
    app.database.close()
    before = _row_counts(deployment)
    assert before["run_lock.token"] == 1
    writes = deployment.writes()
    assert writes  # the first pass wrote to Gmail
    for command in (("sync", "--once"), ("resync", "--all")):
        done = deployment.syncd(*command)
        assert done.returncode == 1, done.stderr
        assert done.stderr.splitlines() == [
            "syncd: issuing CA 'pipeline' (ca.label): its key no-such-key is not usable in the "
            "local KMS: no key no-such-key in the local KMS"
        ]
        assert _row_counts(deployment) == before  # no run, no user, no task, no lock token
    assert deployment.writes() == writes  # and these passes did not


class _FlakyLocal(LocalKeyManager):
    """The embedded backend, with failures injected the way a remote KMS fails."""

    def __init__(self, config: Config, app: App, fail: dict[str, Any]) -> None:
        master = load_master_key(config.kms.local.master_key_file)
        super().__init__(app.database.engine, master, load_wrapping_key(config.kacls))
        self.fail = fail
        self.calls: dict[str, int] = {}
        self._mutex = threading.Lock()

    def _count(self, operation: str) -> int:
        with self._mutex:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            return self.calls[operation]

    def create_key_pair(self, label: str, bits: int) -> KeyRef:
        if self._count("create") <= self.fail.get("unavailable_creates", 0):
            raise KMSUnavailableError("KMIP server kms.test:5696: CreateKeyPair: connection reset")
        return super().create_key_pair(label, bits)

    def wrapped_private_key(self, private_key_id: str, key_format: PrivateKeyFormat) -> str:
        self._count("wrap")
        if self.fail.get("refuse_wrap_of") == private_key_id:
            raise KMSRefusedError(
                f"KMIP server kms.test:5696: Get with key {private_key_id} refused: "
                "permission denied"
            )
        return super().wrapped_private_key(private_key_id, key_format)


class _InjectedApp(App):
    def __init__(self, config: Config, kms: KeyManager) -> None:
        super().__init__(config)
        self.kms = kms

    def keyring(self, *, need_wrapping_key: bool = False) -> Keyring:
        return Keyring(self.kms, lambda name: open_key_manager(self.config, self.database.engine))


def test_an_unavailable_kms_is_retried_within_the_step(deployment: Deployment) -> None:
    deployment.set_users(sandbox_users(2))
    config = deployment.config
    app = App(config)
    flaky = _FlakyLocal(config, app, {"unavailable_creates": 2})
    result = sync_pass(_InjectedApp(config, flaky))
    assert result.clean, [r.error for r in result.failures]
    assert flaky.calls["create"] == 4  # two refused connections, then one key per user
    assert deployment.kms_key_count() == 3  # the issuer's and one per user: nothing twice


def test_a_kms_refusal_fails_the_task_permanently_with_its_reason(
    deployment: Deployment,
) -> None:
    users = sandbox_users(3)
    deployment.set_users(users)
    config = deployment.config
    app = App(config)

    class RefuseFirstWrap(_FlakyLocal):
        def create_key_pair(self, label: str, bits: int) -> KeyRef:
            ref = super().create_key_pair(label, bits)
            if users[0] in label:
                self.fail["refuse_wrap_of"] = ref.private_key_id
            return ref

    kms = RefuseFirstWrap(config, app, {})
    result = sync_pass(_InjectedApp(config, kms))
    [failure] = result.failures
    assert failure.email == users[0] and failure.failed_step == "upload_keypair"
    assert kms.calls["wrap"] == 3  # the refusal was not retried
    with app.database.sessions() as session:
        task = session.scalars(select(Task).where(Task.status == "failed")).one()
    assert task.permanent and task.next_attempt_at is None
    assert task.last_error == (
        f"upload_keypair: KMIP server kms.test:5696: Get with key {kms.fail['refuse_wrap_of']} "
        "refused: permission denied"
    )
