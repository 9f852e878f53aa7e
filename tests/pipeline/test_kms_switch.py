"""Switching ``kms.backend``: the users provisioned before keep working through the backend
that holds their keys (repair re-wraps there, deprovision revokes there) until their renewal
makes a key in the configured one.

The second backend here is another embedded key store (its own database and master key)
standing in for kmip, so a key asked of the wrong backend is not found there. The same flow
against the PyKMIP server is in tests/kmip.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from syncd.app.context import App
from syncd.app.passes import resync, sync_pass
from syncd.config import Config
from syncd.credentials.issuers import import_issuer
from syncd.kms import KeyManager, Keyring, open_key_manager
from syncd.kms.kacls import load_wrapping_key
from syncd.kms.local import LocalKeyManager
from syncd.state.models import Base, KeyPair, KmsKey, KmsKeyState, User
from syncd.state.queries import user_status
from tests.conftest import _migrate

from .aging import age_key_pairs
from .conftest import P12_PASSWORD, Deployment, gmail_state, sandbox_users


@pytest.fixture
def migrated_db_url(tmp_path: Path) -> str:
    """SQLite only: these concern the KMS, not the state store (the pipeline's other tests
    run on both stores)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    return url


class OtherStore(LocalKeyManager):
    """A second backend: its own key table, named as the configured kmip backend would be."""

    name = "kmip"


class SwitchedApp(App):
    """``kms.backend`` switched to the other store; local still opens (lazily) for old keys."""

    def __init__(self, config: Config, other: KeyManager) -> None:
        super().__init__(config)
        self.other = other
        self.opened: list[str] = []

    def keyring(self, *, need_wrapping_key: bool = False) -> Keyring:
        def open_backend(name: str) -> KeyManager:
            self.opened.append(name)
            return open_key_manager(self.config, self.database.engine)

        return Keyring(self.other, open_backend)


def _other_store(root: Path, config: Config) -> OtherStore:
    engine = create_engine(f"sqlite:///{root / 'other-kms.db'}")
    Base.metadata.create_all(engine, tables=[KmsKey.__table__])  # type: ignore[list-item]
    return OtherStore(engine, os.urandom(32), load_wrapping_key(config.kacls))


def _rows(app: App, email: str) -> list[KeyPair]:
    with app.database.sessions() as session:
        return list(
            session.scalars(
                select(KeyPair).join(User).where(User.email == email).order_by(KeyPair.generation)
            )
        )


def _obliterate_in_gmail(deploy: Deployment, email: str, key_pair_id: str) -> None:
    gmail = deploy.gmail()
    gmail.delete_identity(email)
    gmail.disable_keypair(email, key_pair_id)
    deploy.admin("POST", "clock", {"advance_seconds": 31 * 86400})
    gmail.obliterate_keypair(email, key_pair_id)


def test_switching_backend_keeps_old_users_until_renewal(deployment: Deployment) -> None:
    deploy = deployment
    users = sandbox_users(6)
    first = sync_pass(deploy.app())
    assert first.clean
    before = {email: _rows(deploy.app(), email)[0] for email in users}
    assert {row.kms_backend for row in before.values()} == {"local"}

    other = _other_store(deploy.root, deploy.config)
    app = SwitchedApp(deploy.config, other)
    assert sync_pass(app).clean  # nothing to do; the issuer's key is still in the local store
    assert app.opened == ["local"]
    # The issuer is imported into the new backend too (syncd ca import --replace).
    hierarchy = deploy.hierarchy
    assert hierarchy.issuer_p12 is not None and hierarchy.root_pem is not None
    issuer, _ = import_issuer(
        app.database.sessions,
        other,
        label="pipeline",
        pkcs12_data=hierarchy.issuer_p12.read_bytes(),
        password=P12_PASSWORD,
        extra_chain_pem=hierarchy.root_pem.read_bytes(),
        now=datetime.now(UTC),
        where="issuer.p12",
        replace=True,
    )
    assert issuer.kms_backend == "kmip"
    app = SwitchedApp(deploy.config, other)
    assert sync_pass(app).clean
    assert app.opened == []  # nothing held by local was needed

    # Repair: the key pair is gone from Gmail; the re-upload wraps the key where it is held.
    repaired = users[0]
    _obliterate_in_gmail(deploy, repaired, str(before[repaired].gmail_key_pair_id))
    result = resync(app, [repaired], force=False)
    assert result.clean, [r.error for r in result.failures]
    assert app.opened == ["local"]
    keypairs, identity = gmail_state(deploy, repaired)
    enabled = [kp for kp in keypairs if kp.get("enablementState") == "enabled"]
    assert len(enabled) == 1 and identity is not None
    assert identity["primaryKeyPairId"] == enabled[0]["keyPairId"]
    [row] = _rows(app, repaired)
    assert row.kms_backend == "local"
    assert row.kms_private_key_id == before[repaired].kms_private_key_id

    # Deprovision: the old user's key is revoked in the local store that holds it.
    leaver = users[1]
    deploy.set_users([users[0], *users[2:]])
    deploy.update_config(policy={"deprovision_after": "0s"})
    app = SwitchedApp(deploy.config, other)
    assert sync_pass(app).clean
    local_id = before[leaver].kms_private_key_id
    with deploy.app().database.sessions() as session:
        state = session.scalar(select(KmsKey.state).where(KmsKey.id == local_id))
    assert state is KmsKeyState.REVOKED

    # Renewal: the new generation's key is made in the configured backend.
    # Eleven months pass, for syncd: the state store's certificate dates move back 340 days
    # (tests/pipeline/aging.py), so every 365-day certificate is due (25 days left, inside
    # renew_before_days) and past half its validity.
    age_key_pairs(deploy.config.state.url, 340)
    app = SwitchedApp(deploy.config, other)
    assert sync_pass(app).clean
    renewed = _rows(app, users[2])
    assert [row.kms_backend for row in renewed] == ["local", "kmip"]
    with app.database.sessions() as session:
        status = {row["email"]: row["kms_backend"] for row in user_status(session)}
    assert status == {users[0]: "kmip", **dict.fromkeys(users[2:], "kmip"), users[1]: None}
    assert other.locate(renewed[-1].kms_label)[0].private_key_id == renewed[-1].kms_private_key_id
    assert open_key_manager(deploy.config, deploy.app().database.engine).locate(
        renewed[-1].kms_label
    ) == []  # not in the local store
    keypairs, identity = gmail_state(deploy, users[2])
    assert identity is not None
    newest = next(kp for kp in keypairs if kp["keyPairId"] == identity["primaryKeyPairId"])
    assert newest["keyPairId"] == renewed[-1].gmail_key_pair_id
