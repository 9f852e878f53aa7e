"""CA rollover end to end: a new issuing intermediate is imported, ``ca.label`` switched to it,
and ordinary passes re-issue at most ``policy.reissue_per_pass`` users each until everyone's
certificate in Gmail chains to the new CA; nothing else changes on the way.

Real passes (``syncd sync --once``) against the sandbox over HTTP, the embedded KMS, a SQLite
store (the store's two engines are covered by test_sync.py); the certificates Gmail holds are
judged by ``openssl verify`` against the new intermediate.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from syncd.domain import KeyPairStatus
from syncd.state.db import Database
from syncd.state.models import KeyPair, User
from syncd.state.queries import history
from tests.support.testca import TestHierarchy, make_intermediate, new_key, write_private_file

from .conftest import (
    P12_PASSWORD,
    Deployment,
    build_deployment,
    gmail_state,
    import_pipeline_issuer,
    sandbox_users,
)
from .test_sync import assert_provisioned

USERS = sandbox_users(5)
PER_PASS = 2


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


def _new_intermediate(deploy: Deployment, ca: TestHierarchy) -> tuple[x509.Certificate, Path]:
    """A second issuing intermediate under the same root (the sandbox already trusts it),
    imported with ``syncd ca import --label new``; returns it and its PEM file."""
    key = new_key("rsa")
    cert = make_intermediate(
        key, ca.root_cert, ca.root_key, "Pipeline Rollover", None, datetime.now(UTC), 1825
    )
    bundle = deploy.root / "new-issuer.p12"
    write_private_file(
        bundle,
        pkcs12.serialize_key_and_certificates(
            b"new issuer", key, cert, [ca.root_cert],
            serialization.BestAvailableEncryption(P12_PASSWORD),
        ),
    )  # fmt: skip
    password = deploy.root / "new-issuer.pass"
    write_private_file(password, P12_PASSWORD)
    assert ca.root_pem is not None
    imported = deploy.syncd(
        "ca", "import", str(bundle), "--password-file", str(password),
        "--chain", str(ca.root_pem), "--label", "new",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    pem = deploy.root / "new-intermediate.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, pem


def _identity_leaf(deploy: Deployment, email: str) -> x509.Certificate:
    """The certificate of the key pair Gmail's identity for ``email`` points at."""
    keypairs, identity = gmail_state(deploy, email)
    assert identity is not None, f"{email}: no identity"
    (current,) = [kp for kp in keypairs if kp["keyPairId"] == identity["primaryKeyPairId"]]
    return x509.load_pem_x509_certificates(current["pem"].encode())[0]


def _on_new_ca(deploy: Deployment, new_ca: x509.Certificate) -> set[str]:
    return {e for e in USERS if _identity_leaf(deploy, e).issuer == new_ca.subject}


def _plan(deploy: Deployment) -> dict[str, Any]:
    shown = deploy.syncd("plan", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    plan: dict[str, Any] = json.loads(shown.stdout)["plan"]
    return plan


def test_switching_the_issuing_ca_reissues_a_few_users_a_pass_until_all_are_moved(
    deployment: Deployment, pipeline_ca: TestHierarchy
) -> None:
    deployment.set_users(USERS)
    first = deployment.syncd("sync", "--once")
    assert first.returncode == 0, first.stderr
    old_key_pairs = {email: assert_provisioned(deployment, email) for email in USERS}
    new_ca, new_ca_pem = _new_intermediate(deployment, pipeline_ca)
    assert _plan(deployment)["actions"] == []  # importing a CA changes nothing by itself

    deployment.update_config(ca={"label": "new"}, policy={"reissue_per_pass": str(PER_PASS)})
    text_plan = deployment.syncd("plan")
    assert text_plan.returncode == 0, text_plan.stderr
    assert (
        "5 credentials out of date with the configuration: 2 re-issued this pass, 3 pending "
        "(policy.reissue_per_pass: 2)"
    ) in text_plan.stdout

    moved: set[str] = set()
    for pass_number in range(1, 4):  # 2, 2, then the last 1
        plan = _plan(deployment)
        left = len(USERS) - len(moved)
        now = min(left, PER_PASS)
        assert plan["reissue"] == {
            "out_of_date": left,
            "this_pass": now,
            "pending": left - now,
            "per_pass": str(PER_PASS),
        }
        assert plan["held"] == [] and plan["blocked_deprovisions"] == []
        assert [(a["action"], a["code"], a["task"], a["reason"]) for a in plan["actions"]] == [
            ("renew", "config_changed", "renew", "config changed: issuer pipeline -> new")
        ] * now
        chosen = {a["email"] for a in plan["actions"]}
        assert not chosen & moved

        done = deployment.syncd("sync", "--once")
        assert done.returncode == 0, done.stderr
        assert f"{now} done, 0 failed" in done.stdout, done.stdout
        if left > now:
            assert f", {left - now} re-issues pending" in done.stdout, done.stdout
        moved |= chosen
        assert _on_new_ca(deployment, new_ca) == moved, f"after pass {pass_number}"
    assert moved == set(USERS)

    # Everyone is on the new CA: the plan is empty, and a pass writes nothing anywhere.
    plan = _plan(deployment)
    assert plan["actions"] == []
    assert plan["reissue"] == {"out_of_date": 0, "this_pass": 0, "pending": 0, "per_pass": "2"}
    writes, keys = deployment.writes(), deployment.kms_key_count()
    idle = deployment.syncd("sync", "--once")
    assert idle.returncode == 0, idle.stderr
    assert "0 done, 0 failed" in idle.stdout
    assert deployment.writes() == writes and deployment.kms_key_count() == keys

    # openssl, not syncd, judges the certificates Gmail now holds: each chains to the root
    # through the new intermediate.
    leaves = []
    for email in USERS:
        leaf = deployment.root / f"{email}.pem"
        leaf.write_bytes(_identity_leaf(deployment, email).public_bytes(serialization.Encoding.PEM))
        leaves.append(str(leaf))
    assert pipeline_ca.root_pem is not None
    verified = subprocess.run(
        ["openssl", "verify", "-purpose", "smimeencrypt", "-CAfile", str(pipeline_ca.root_pem),
         "-untrusted", str(new_ca_pem), *leaves],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(": OK") == len(USERS)

    # Nothing else changed: each user was renewed once, for the configuration, and kept the
    # old key pair enabled (old mail still decrypts); nobody was deprovisioned.
    database = Database.open(deployment.config.state.url)
    with database.engine.connect() as connection:
        histories = {email: history(connection, email) for email in USERS}
        profiles = connection.execute(
            select(KeyPair.profile)
            .join(User, User.id == KeyPair.user_id)
            .where(KeyPair.status == KeyPairStatus.ACTIVE)
        ).scalars()
        recorded = [dict(profile) for profile in profiles]
    database.close()
    # What each new certificate was issued with, as issue_certificate recorded it.
    assert recorded == [
        {
            "key_bits": 2048,
            "hash": "sha256",
            "subject_template": "CN={email}",
            "crl": [],
            "aia_ca_issuers": [],
            "aia_ocsp": [],
            "issuer": "new",
            "aliases": [],
        }
    ] * len(USERS)
    for email in USERS:
        keypairs, _ = gmail_state(deployment, email)
        assert {kp["keyPairId"] for kp in keypairs if kp["enablementState"] == "enabled"} >= {
            old_key_pairs[email]
        }
        events = histories[email]
        planned = [e["action"] for e in events if e["action"].startswith("plan.")]
        assert planned == ["plan.provision", "plan.renew"], (email, planned)
        (renewal,) = [e for e in events if e["action"] == "plan.renew"]
        assert renewal["detail"]["reason"] == "config changed: issuer pipeline -> new"
        assert not [e for e in events if e["action"].startswith("deprovision")]
