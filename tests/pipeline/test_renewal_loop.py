"""Renewal that cannot loop (issue 15, item 5), end to end against the sandbox.

An issuing CA that expires within ``certificate.renew_before_days`` cuts every certificate
short to its own end: each one is due for renewal the moment it is issued, and a renewal
could not reach further. Before the fix, every pass renewed every user (and enabled key pairs
piled up in Gmail). Now the plan holds those users with the code ``issuer_expiring`` and says
what to do. Once a new CA is imported and ``ca.label`` names it, they are renewed once, when
past half their validity (never sooner for expiry: the guard that keeps a renewal from looping).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _migrate
from tests.support.testca import TestHierarchy, make_test_hierarchy, write_private_file

from .aging import age_key_pairs
from .conftest import (
    P12_PASSWORD,
    Deployment,
    build_deployment,
    gmail_state,
    import_pipeline_issuer,
    sandbox_users,
)

ISSUER_DAYS = 10
"""The short-lived issuing CA's validity: well inside renew_before_days (30)."""


@pytest.fixture
def expiring_ca_deployment(
    tmp_path: Path, pipeline_ca: TestHierarchy
) -> Iterator[Deployment]:
    """Two users; ``ca.label: pipeline`` is an issuing CA that expires in ten days. The
    sandbox also trusts the pipeline tests' long-lived root (the replacement CA's)."""
    short = make_test_hierarchy(
        tmp_path / "short-ca", password=P12_PASSWORD, organization="Short Lived",
        intermediate_days=ISSUER_DAYS,
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    deploy = build_deployment(tmp_path, url, short)
    try:
        assert pipeline_ca.root_pem is not None
        roots = tmp_path / "sandbox" / "trusted_roots.pem"
        roots.write_bytes(roots.read_bytes() + pipeline_ca.root_pem.read_bytes())
        import_pipeline_issuer(deploy, short)
        deploy.set_users(sandbox_users(2))
        yield deploy
    finally:
        deploy.sandbox.stop()


def _ok(deploy: Deployment, *args: str) -> str:
    done = deploy.syncd(*args)
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def _plan(deploy: Deployment) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(_ok(deploy, "plan", "--format", "json"))["plan"]
    return plan


def test_an_expiring_issuer_does_not_make_every_pass_renew(
    expiring_ca_deployment: Deployment, pipeline_ca: TestHierarchy
) -> None:
    deploy = expiring_ca_deployment
    users = sandbox_users(2)
    for _ in range(3):
        _ok(deploy, "sync", "--once")
    for email in users:
        keypairs, _ = gmail_state(deploy, email)
        assert len(keypairs) == 1, f"{email}: {len(keypairs)} key pairs after three passes"

    plan = _plan(deploy)
    assert plan["actions"] == []
    assert {h["email"] for h in plan["held"]} == set(users)
    for hold in plan["held"]:
        assert hold["code"] == "issuer_expiring"
        assert "certificates cannot outlive the issuing CA (expires " in hold["reason"]
        assert hold["reason"].endswith("import a new CA and set ca.label")

    # The remedy the hold names: a new issuing CA, chosen by ca.label; each user renews once.
    assert pipeline_ca.issuer_p12 is not None and pipeline_ca.root_pem is not None
    password = deploy.root / "new-ca.pass"
    write_private_file(password, P12_PASSWORD)
    _ok(
        deploy, "ca", "import", str(pipeline_ca.issuer_p12), "--password-file", str(password),
        "--chain", str(pipeline_ca.root_pem), "--label", "next",
    )  # fmt: skip
    deploy.update_config(ca={"label": "next"})
    plan = _plan(deploy)
    assert plan["held"] == []
    # Not renewed for expiry while younger than half their (ten days') validity: the guard. The
    # new ca.label is configuration drift, though: re-issued gradually, one a pass here
    # (policy.reissue_per_pass 1% of two users, at least one), the other left pending.
    assert [(a["action"], a["code"]) for a in plan["actions"]] == [("renew", "config_changed")]
    assert plan["reissue"]["pending"] == 1
    # Six days later, for syncd (its state store's dates move back; tests/pipeline/aging.py).
    assert age_key_pairs(deploy.config.state.url, 6) == 2
    plan = _plan(deploy)
    assert {(a["email"], a["action"], a["code"]) for a in plan["actions"]} == {
        (email, "renew", "expiring") for email in users
    }
    _ok(deploy, "sync", "--once")
    _ok(deploy, "sync", "--once")
    for email in users:
        keypairs, identity = gmail_state(deploy, email)
        assert len(keypairs) == 2, f"{email}: {len(keypairs)} key pairs"
        assert identity is not None
    assert [a for a in _plan(deploy)["actions"] if a["action"] == "renew"] == []
