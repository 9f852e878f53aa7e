"""Switching ``kms.backend`` from local to kmip (the real PyKMIP server) on a provisioned
deployment, through the ``syncd`` command: the users provisioned before keep working through
the local store that holds their keys (a repair re-wraps there, a deprovision revokes there);
their renewal makes the new key in the KMIP server, checked with PyKMIP's own client."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from syncd.state.models import KeyPair, KmsKey, KmsKeyState, User
from tests.conftest import _migrate
from tests.kmip.server import PyKmipServer
from tests.kmip.test_kmip_commands import pykmip_client
from tests.pipeline.aging import age_key_pairs
from tests.pipeline.conftest import (  # noqa: F401  (fixtures used by this module)
    P12_PASSWORD,
    Deployment,
    deployment,
    gmail_state,
    pipeline_ca,
    sandbox_users,
)
from tests.support.testca import write_private_file


@pytest.fixture
def migrated_db_url(tmp_path: Path) -> str:
    """SQLite only here: which store holds the rows does not matter to switching backends, and
    the pipeline tests cover both stores."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    return url


def _rows(deploy: Deployment, email: str) -> list[KeyPair]:
    database = deploy.app().database
    with database.sessions() as session:
        rows = list(
            session.scalars(
                select(KeyPair).join(User).where(User.email == email).order_by(KeyPair.generation)
            )
        )
    database.close()
    return rows


def _ok(deploy: Deployment, *args: str) -> str:
    done = deploy.syncd(*args)
    assert done.returncode == 0, f"syncd {' '.join(args)}: {done.stderr}"
    return done.stdout


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_switch_to_kmip_keeps_old_users_until_renewal(
    deployment: Deployment,  # noqa: F811
    pykmip_server: PyKmipServer,
) -> None:
    deploy = deployment
    users = sandbox_users(6)
    _ok(deploy, "sync", "--once")
    before = {email: _rows(deploy, email)[0] for email in users}
    assert {row.kms_backend for row in before.values()} == {"local"}

    server = pykmip_server
    deploy.update_config(
        kms={
            "backend": "kmip",
            "kmip": server.kmip_section(timeout=5),
        }
    )
    assert "0 done, 0 failed" in _ok(deploy, "sync", "--once")
    # The issuer moves to the KMIP server (its key registered there).
    hierarchy = deploy.hierarchy
    assert hierarchy.issuer_p12 is not None and hierarchy.root_pem is not None
    write_private_file(deploy.root / "issuer.pass", P12_PASSWORD)
    _ok(
        deploy, "ca", "import", str(hierarchy.issuer_p12), "--password-file",
        str(deploy.root / "issuer.pass"), "--chain", str(hierarchy.root_pem), "--replace",
        "--label", "pipeline",
    )  # fmt: skip

    # Repair: the key pair is gone from Gmail; the re-upload wraps the local key.
    repaired = users[0]
    gmail = deploy.gmail()
    gmail.delete_identity(repaired)
    gmail.disable_keypair(repaired, str(before[repaired].gmail_key_pair_id))
    deploy.admin("POST", "clock", {"advance_seconds": 31 * 86400})
    gmail.obliterate_keypair(repaired, str(before[repaired].gmail_key_pair_id))
    _ok(deploy, "resync", "--user", repaired)
    keypairs, identity = gmail_state(deploy, repaired)
    [enabled] = [kp for kp in keypairs if kp.get("enablementState") == "enabled"]
    assert identity is not None and identity["primaryKeyPairId"] == enabled["keyPairId"]
    [row] = _rows(deploy, repaired)
    assert row.kms_backend == "local"
    assert row.kms_private_key_id == before[repaired].kms_private_key_id

    # Deprovision: the leaver's key is revoked in the local store that holds it.
    leaver = users[1]
    deploy.set_users([u for u in users if u != leaver])
    deploy.update_config(policy={"deprovision_after": "0s"})
    _ok(deploy, "sync", "--once")
    database = deploy.app().database
    with database.sessions() as session:
        state = session.scalar(
            select(KmsKey.state).where(KmsKey.id == before[leaver].kms_private_key_id)
        )
    database.close()
    assert state is KmsKeyState.REVOKED

    # Renewal: the new keys are made in the KMIP server.
    # Eleven months pass, for syncd: the state store's certificate dates move back 340 days
    # (tests/pipeline/aging.py), so every 365-day certificate is due (25 days left, inside
    # renew_before_days) and past half its validity.
    age_key_pairs(deploy.config.state.url, 340)
    _ok(deploy, "sync", "--once")
    renewed = _rows(deploy, users[2])
    assert [row.kms_backend for row in renewed] == ["local", "kmip"]
    newest = renewed[-1]
    assert newest.certificate_pem is not None
    leaf = x509.load_pem_x509_certificate(newest.certificate_pem.encode())
    with pykmip_client(server) as client:
        held = client.get(newest.kms_private_key_id)
    private = serialization.load_der_private_key(held.value, password=None)
    assert _spki(private.public_key()) == _spki(leaf.public_key())
    keypairs, identity = gmail_state(deploy, users[2])
    assert identity is not None and identity["primaryKeyPairId"] == newest.gmail_key_pair_id
