"""Renames and reused addresses through real passes: the sandbox renames, deletes and creates
users as the Admin console would, the static directory lists them, and ``syncd plan`` and
``syncd sync`` run as commands against the sandbox over HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from syncd.domain import KeyPairStatus, KmsKeyState, TaskKind
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import GmailCSE
from syncd.pipeline.steps import Services, Work
from syncd.pipeline.steps.rename import delete_previous_identity
from syncd.plan import DesiredProfile
from syncd.state.db import Database
from syncd.state.models import KeyPair, KmsKey, User
from tests.support.sandbox import DOMAIN, KACLS_URI, RunningSandbox, leaf_pkcs7, start_sandbox
from tests.support.testca import TestHierarchy

from .conftest import Deployment, gmail_state, sandbox_users

USERS = sandbox_users(6)
OLD = USERS[1]  # user01@: renamed to NEW
NEW = "ann.renamed@example.com"
DELETED = USERS[2]  # user02@: deleted in Google, the address given to a new person
REKEYED = USERS[3]  # user03@: same mailbox, the directory lists it under another id
LEAVER = USERS[4]  # user04@: renamed to LEFT and disabled in the same read
LEFT = "dan.renamed@example.com"


def write_users(
    deploy: Deployment, entries: list[tuple[str, str]], disabled: tuple[str, ...] = ()
) -> None:
    users = [
        {"email": email, "id": directory_id, "enabled": email not in disabled}
        for email, directory_id in entries
    ]
    deploy.users_file.write_text(yaml.safe_dump({"users": users}))


def plan_document(deploy: Deployment) -> dict[str, Any]:
    answer = deploy.syncd("plan", "--format", "json")
    assert answer.returncode in (0, 1), answer.stderr
    return json.loads(answer.stdout)["plan"]  # type: ignore[no-any-return]


def rows(deploy: Deployment, email: str) -> tuple[User, list[KeyPair], dict[str, KmsKeyState]]:
    """The user's row, their key pairs (oldest first) and the state of each KMS key."""
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            user = session.scalars(select(User).where(User.email == email)).one()
            pairs = list(
                session.scalars(
                    select(KeyPair).where(KeyPair.user_id == user.id).order_by(KeyPair.generation)
                )
            )
            ids = [kp.kms_private_key_id for kp in pairs if kp.kms_private_key_id]
            found = session.scalars(select(KmsKey).where(KmsKey.id.in_(ids)))
            keys = {k.id: k.state for k in found}
            session.expunge_all()
        return user, pairs, keys
    finally:
        database.close()


def certificate_emails(pem: str) -> str:
    """The leaf's subject and subjectAltName as ``openssl x509`` prints them."""
    shown = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"],
        input=pem, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return shown.stdout


def identity_at(deploy: Deployment, mailbox: str, address: str) -> dict[str, Any] | None:
    try:
        return deploy.gmail().get_identity(mailbox, address)
    except GoogleAPIError as error:
        if error.status != 404:
            raise
        return None


def test_a_rename_and_reused_addresses_through_real_passes(deployment: Deployment) -> None:
    deployment.update_config(policy={"max_deprovision": "50%"})  # 2 reassigned, 1 leaver
    first = deployment.syncd("sync", "--once")
    assert first.returncode == 0, first.stderr
    old_keypairs, old_identity = gmail_state(deployment, OLD)
    assert old_identity is not None
    (old_keypair,) = old_keypairs
    before = {email: gmail_state(deployment, email)[0] for email in (DELETED, REKEYED)}

    # In Google: user01 renamed (same id, same mailbox, the old address an alias); user02
    # deleted and the address given to a new person. The directory read follows.
    deployment.admin("POST", "users:rename", {"from": OLD, "to": NEW})
    deployment.admin("POST", "users:delete", {"email": DELETED})
    deployment.admin("POST", "users:create", {"primaryEmail": DELETED, "id": "new-person-02"})
    deployment.admin("POST", "users:rename", {"from": LEAVER, "to": LEFT})
    entries = [(email, f"id-{email}") for email in USERS]
    entries[1] = (NEW, f"id-{OLD}")
    entries[2] = (DELETED, "new-person-02")
    entries[3] = (REKEYED, "rekeyed-03")
    entries[4] = (LEFT, f"id-{LEAVER}")
    write_users(deployment, entries, disabled=(LEFT,))

    writes = deployment.writes()
    plan = plan_document(deployment)
    assert deployment.writes() == writes, "syncd plan wrote to Gmail"
    decided = {a["email"]: (a["action"], a["code"], a["task"]) for a in plan["actions"]}
    assert decided == {
        NEW: ("rename", "renamed", "rename"),
        DELETED: ("reassign", "address_reused", "reassign"),
        REKEYED: ("reassign", "address_reused", "reassign"),
        LEFT: ("deprovision", "disabled_in_directory", "deprovision"),
    }
    reasons = {a["email"]: a["reason"] for a in plan["actions"]}
    assert reasons[NEW].startswith(f"renamed from {OLD} (directory id id-{OLD}): ")
    assert reasons[REKEYED].startswith(
        f"address now belongs to directory id rekeyed-03 (was id-{REKEYED}): "
    )
    assert rows(deployment, OLD)[0].previous_email is None, "the dry run changed the state"

    done = deployment.syncd("sync", "--once")
    assert done.returncode == 0, done.stderr
    assert "4 done, 0 failed" in done.stdout

    # The rename: a new key pair for the new address, the new identity on it, the old
    # identity gone, the old key pair still enabled; one user, one history.
    keypairs, identity = gmail_state(deployment, NEW)
    by_id = {kp["keyPairId"]: kp for kp in keypairs}
    assert set(by_id) >= {old_keypair["keyPairId"]} and len(by_id) == 2
    assert by_id[old_keypair["keyPairId"]]["enablementState"] == "enabled"
    assert identity is not None and identity["primaryKeyPairId"] != old_keypair["keyPairId"]
    fresh = by_id[identity["primaryKeyPairId"]]
    assert fresh["enablementState"] == "enabled"
    shown = certificate_emails(fresh["pem"])
    assert f"email:{NEW}" in shown and OLD not in shown
    assert identity_at(deployment, NEW, OLD) is None
    user, pairs, keys = rows(deployment, NEW)
    assert (user.email, user.previous_email, user.directory_id) == (NEW, OLD, f"id-{OLD}")
    assert [kp.status for kp in pairs] == [KeyPairStatus.SUPERSEDED, KeyPairStatus.ACTIVE]
    assert set(keys.values()) == {KmsKeyState.ACTIVE}  # the old key still decrypts old mail
    status = json.loads(deployment.syncd("status", "--format", "json").stdout)["users"]
    assert OLD not in {row["email"] for row in status}
    history = deployment.syncd("history", "--user", NEW, "--format", "json")
    assert history.returncode == 0, history.stderr
    actions = [event["action"] for event in json.loads(history.stdout)["events"]]
    assert actions.index("provision.done") < actions.index("user.renamed")
    assert actions.index("user.renamed") < actions.index("rename.delete_previous_identity")
    assert actions[-1] == "rename.done"

    # The reused addresses: the new person's identity on a fresh key pair; every old key
    # pair disabled in the state store and its KMS key revoked.
    for email in (DELETED, REKEYED):
        keypairs, identity = gmail_state(deployment, email)
        old_ids = {kp["keyPairId"] for kp in before[email]}
        assert identity is not None and identity["primaryKeyPairId"] not in old_ids
        user, pairs, keys = rows(deployment, email)
        assert [kp.status for kp in pairs] == [KeyPairStatus.DISABLED, KeyPairStatus.ACTIVE]
        assert keys[pairs[0].kms_private_key_id or ""] is KmsKeyState.REVOKED
        assert keys[pairs[1].kms_private_key_id or ""] is KmsKeyState.ACTIVE
        assert pairs[1].gmail_key_pair_id == identity["primaryKeyPairId"]
    # user02's new mailbox holds only the new person's key pair; user03's mailbox still has
    # the old one, disabled.
    assert len(gmail_state(deployment, DELETED)[0]) == 1
    rekeyed = {kp["keyPairId"]: kp["enablementState"] for kp in gmail_state(deployment, REKEYED)[0]}
    assert [rekeyed[kp["keyPairId"]] for kp in before[REKEYED]] == ["disabled"]
    assert rows(deployment, REKEYED)[0].directory_id == "rekeyed-03"

    # Renamed and disabled at once: the identity of the old address (the one there was) is
    # deleted, the key pair disabled; the user keeps one row under the new address.
    keypairs, identity = gmail_state(deployment, LEFT)
    assert identity is None and identity_at(deployment, LEFT, LEAVER) is None
    assert [kp["enablementState"] for kp in keypairs] == ["disabled"]
    user, pairs, keys = rows(deployment, LEFT)
    assert (user.previous_email, [kp.status for kp in pairs]) == (LEAVER, [KeyPairStatus.DISABLED])
    assert set(keys.values()) == {KmsKeyState.REVOKED}

    # Nothing left to do.
    writes = deployment.writes()
    again = deployment.syncd("sync", "--once")
    assert again.returncode == 0, again.stderr
    assert "0 done, 0 failed" in again.stdout
    assert deployment.writes() == writes


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)  # no engine-specific part
def test_a_directory_id_attribute_changed_for_everyone_is_blocked(deployment: Deployment) -> None:
    assert deployment.syncd("sync", "--once").returncode == 0
    write_users(deployment, [(email, f"objectGUID-{i}") for i, email in enumerate(USERS)])
    writes = deployment.writes()
    for _ in range(2):  # the block holds pass after pass: the new ids are not taken
        blocked = deployment.syncd("sync", "--once")
        assert blocked.returncode == 1
        assert "6 deprovisions blocked" in blocked.stdout
        assert "--allow-mass-deprovision" in blocked.stderr
    assert deployment.writes() == writes
    for email in USERS:
        user, pairs, _ = rows(deployment, email)
        assert user.directory_id == f"id-{email}"
        assert [kp.status for kp in pairs] == [KeyPairStatus.ACTIVE]


@pytest.fixture(scope="module")
def sample_sandbox(
    tmp_path_factory: pytest.TempPathFactory, pipeline_ca: TestHierarchy
) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("rename-step"), pipeline_ca)
    yield running
    running.stop()


def step_services(gmail: GmailCSE, include_aliases: bool) -> Services:
    """What delete_previous_identity uses (Gmail, the desired profile); nothing else is."""
    return Services(
        keys=None, gmail=gmail, issuer=None, profile=None, kacls_uri=KACLS_URI,  # type: ignore[arg-type]
        key_bits=2048, clock=lambda: datetime.now(UTC),
        desired=DesiredProfile(include_aliases=include_aliases),
    )  # fmt: skip


def test_delete_previous_identity_step(
    sample_sandbox: RunningSandbox, pipeline_ca: TestHierarchy
) -> None:
    alice, renamed = f"alice@{DOMAIN}", f"alice.archer@{DOMAIN}"
    gmail = GmailCSE(sample_sandbox.google_config())
    pkcs7 = leaf_pkcs7(pipeline_ca, alice)
    created = gmail.create_keypair(alice, pkcs7, KACLS_URI, "d3JhcHBlZA==")
    gmail.create_identity(alice, created["keyPairId"])
    sample_sandbox.admin("POST", "users:rename", {"from": alice, "to": renamed})
    work = Work(
        task_id=1, kind=TaskKind.RENAME, user_id=1, email=renamed, target=None, others=(),
        previous_email=alice, aliases=(alice,),
    )  # fmt: skip

    # The old address is an alias with identities of its own: its identity is kept.
    assert delete_previous_identity(work, step_services(gmail, True)).audit is None
    assert gmail.get_identity(renamed, alice)["primaryKeyPairId"] == created["keyPairId"]
    # Otherwise deleted (through the new address), and done when already gone.
    deleted = delete_previous_identity(work, step_services(gmail, False))
    assert deleted.audit == {"previous_email": alice}
    with pytest.raises(GoogleAPIError) as gone:
        gmail.get_identity(renamed, alice)
    assert gone.value.status == 404
    assert delete_previous_identity(work, step_services(gmail, False)).audit is None
    # The key pair stays enabled; never renamed: nothing to do.
    assert gmail.get_keypair(renamed, created["keyPairId"])["enablementState"] == "enabled"
    plain = Work(task_id=2, kind=TaskKind.RENAME, user_id=2, email=renamed, target=None, others=())
    assert delete_previous_identity(plain, step_services(gmail, False)).audit is None
