"""Aliases in real passes (in process) against the sandbox over HTTP, on SQLite and
PostgreSQL: with ``certificate.include_aliases`` the certificate names the aliases after the
primary address (read back by openssl), Gmail refuses an identity for each alias (the sandbox
holds an identity to the primary address, as Gmail does), the refusal is recorded with the key
pair and audited once, and the next pass asks Gmail nothing again."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from syncd.app.passes import sync_pass
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import GmailCSE
from syncd.google.retry import RetryPolicy
from syncd.pipeline.steps.aliases import insert_alias
from syncd.pipeline.sync import PassResult
from syncd.state.db import Database
from syncd.state.models import AuditEvent, KeyPair, User
from tests.support.sandbox import RunningSandbox, start_sandbox
from tests.support.testca import make_test_hierarchy

from .conftest import DOMAIN, Deployment, gmail_state, sandbox_users

ALICE, BOB = sandbox_users(2)
ALIASES = [f"al@{DOMAIN}", f"Alice.Smith@{DOMAIN.upper()}"]
CREATE = "gmail.users.settings.cse.identities.create"


def run_pass(deploy: Deployment) -> PassResult:
    app = deploy.app()
    try:
        return sync_pass(app)
    finally:
        app.database.close()


def _state(deploy: Deployment) -> tuple[dict[str, Any], list[Any], str]:
    """(the users' alias_identities, the step's audit details, ALICE's certificate PEM)."""
    database = Database.open(deploy.config.state.url)
    with database.sessions() as session:
        rows = session.execute(
            select(User.email, KeyPair.alias_identities, KeyPair.certificate_pem)
            .join(KeyPair, KeyPair.user_id == User.id)
        ).all()
        audits = session.scalars(
            select(AuditEvent.detail)
            .where(AuditEvent.action.endswith(".insert_alias_identities"))
            .order_by(AuditEvent.id)
        ).all()
    database.close()
    pem = next(str(p) for email, _, p in rows if email == ALICE)
    return {email: identities for email, identities, _ in rows}, list(audits), pem


def _san(pem: str) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()[1].strip()


def test_aliases_in_the_certificate_and_the_refused_identities_recorded_once(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    deployment.update_config(certificate={"include_aliases": True})
    deployment.users_file.write_text(yaml.safe_dump({"users": [
        {"email": ALICE, "id": "id-alice", "aliases": ALIASES},
        {"email": BOB, "id": "id-bob"},
    ]}))
    caplog.set_level(logging.WARNING, logger="syncd")
    first = run_pass(deployment)
    assert len(first.results) == 2
    aliases = sorted(a.lower() for a in ALIASES)

    records, audits, pem = _state(deployment)
    refusal = (f"refused: emailAddress must be the primary address of the user ({ALICE}).")
    assert records == {ALICE: dict.fromkeys(aliases, refusal), BOB: None}
    assert [a["alias_identities"] for a in audits] == [dict.fromkeys(aliases, refusal)]
    assert _san(pem) == f"email:{ALICE}, email:{aliases[0]}, email:{aliases[1]}"
    keypairs, identity = gmail_state(deployment, ALICE)
    assert keypairs[0]["subjectEmailAddresses"] == [ALICE, *aliases]
    assert identity is not None and identity["primaryKeyPairId"] == keypairs[0]["keyPairId"]
    warned = [r.getMessage() for r in caplog.records if "refused a CSE identity" in r.getMessage()]
    assert warned == [f"{ALICE}: Gmail refused a CSE identity for 2 alias(es) "
                      f"({', '.join(aliases)}): {refusal.removeprefix('refused: ')}; recorded "
                      "with the key pair, asked again only with the next credential"]
    creates = deployment.writes()[CREATE]
    assert creates == 2 + len(aliases)  # each user's identity, then one try per alias

    # The next pass: nothing to do, Gmail not asked again, nothing audited or logged again.
    caplog.clear()
    second = run_pass(deployment)
    assert second.plan.actions == ()
    assert deployment.writes()[CREATE] == creates
    assert _state(deployment)[:2] == (records, audits)
    assert not [r for r in caplog.records if "refused a CSE identity" in r.getMessage()]


def test_without_include_aliases_the_certificate_names_the_primary_only(
    deployment: Deployment,
) -> None:
    deployment.users_file.write_text(yaml.safe_dump({"users": [
        {"email": ALICE, "id": "id-alice", "aliases": ALIASES}]}))
    assert len(run_pass(deployment).results) == 1
    records, audits, pem = _state(deployment)
    assert records == {ALICE: None} and audits == []
    assert _san(pem) == f"email:{ALICE}"
    assert deployment.writes()[CREATE] == 1


def test_an_alias_added_in_the_directory_reissues_the_certificate(deployment: Deployment) -> None:
    deployment.update_config(certificate={"include_aliases": True})

    def listed(aliases: list[str]) -> None:
        deployment.users_file.write_text(yaml.safe_dump({"users": [
            {"email": ALICE, "id": "id-alice", "aliases": aliases},
            {"email": BOB, "id": "id-bob"}]}))

    listed([f"al@{DOMAIN}"])
    assert len(run_pass(deployment).results) == 2
    listed([f"al@{DOMAIN}", f"alice.smith@{DOMAIN}"])
    [action] = run_pass(deployment).plan.actions
    assert (action.email, action.code) == (ALICE, "config_changed")
    assert action.reason == (f"config changed: aliases [al@{DOMAIN}] -> [al@{DOMAIN}, "
                             f"alice.smith@{DOMAIN}]")
    keypairs, identity = gmail_state(deployment, ALICE)
    assert identity is not None and len(keypairs) == 2
    [current] = [kp for kp in keypairs if kp["keyPairId"] == identity["primaryKeyPairId"]]
    assert current["subjectEmailAddresses"] == [ALICE, f"al@{DOMAIN}", f"alice.smith@{DOMAIN}"]
    records = [r for r in _state(deployment)[1] if len(r["alias_identities"]) == 2]
    assert [r["key_pair_id"] for r in records] == [current["keyPairId"]]
    assert run_pass(deployment).plan.actions == ()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"), make_test_hierarchy())
    yield running
    running.stop()


def test_a_transient_failure_is_never_recorded_as_a_refusal(sandbox: RunningSandbox) -> None:
    fast = RetryPolicy(max_retries=1, base_delay=0.001, max_delay=0.002)
    gmail = GmailCSE(sandbox.google_config(), retry=fast)
    alice = "alice@example.com"
    sandbox.admin("POST", "faults", {"error_503": 1.0})
    try:
        with pytest.raises(GoogleAPIError) as failed:
            insert_alias(gmail, alice, "al@example.com", "kp-1")
    finally:
        sandbox.admin("POST", "faults", {})
    assert failed.value.status == 503 and failed.value.retryable
    assert insert_alias(gmail, alice, "al@example.com", "kp-1") == (
        "refused: emailAddress must be the primary address of the user (alice@example.com).")
