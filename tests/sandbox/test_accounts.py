"""Renaming, deleting and creating users through the sandbox's admin endpoints, seen through
the real Google clients: a rename keeps the id and the mailbox (the old address an alias that
still reaches it), a deleted user's mailbox goes with them."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError

from syncd.sandbox.accounts import rename_user
from syncd.sandbox.store import Store
from tests.support.sandbox import ADMIN, DOMAIN, RunningSandbox
from tests.support.testca import TestHierarchy

from .conftest import api, credentials_for
from .test_gmail import refused, upload

ALICE = f"alice@{DOMAIN}"
ALICE_NEW = f"alice.archer@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
Gmail = Callable[..., Any]
READ_USERS = ["https://www.googleapis.com/auth/admin.directory.user.readonly"]


def listed(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    directory = api(sandbox, "admin", "directory_v1", credentials_for(sandbox, ADMIN, READ_USERS))
    page = directory.users().list(customer="my_customer", maxResults=500).execute()
    return {user["primaryEmail"]: user for user in page["users"]}


def admin_error(sandbox: RunningSandbox, name: str, body: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as caught:
        sandbox.admin("POST", name, body)
    return caught.value.code, json.loads(caught.value.read())["error"]["message"]


def test_a_renamed_user_keeps_id_mailbox_and_old_address(
    sandbox: RunningSandbox, gmail: Gmail, hierarchy: TestHierarchy
) -> None:
    keypair = upload(gmail, hierarchy)
    body = {"emailAddress": ALICE, "primaryKeyPairId": keypair["keyPairId"]}
    gmail(ALICE).identities().create(userId=ALICE, body=body).execute()
    before = listed(sandbox)[ALICE]

    renamed = sandbox.admin("POST", "users:rename", {"from": ALICE, "to": ALICE_NEW})
    assert renamed == {"id": before["id"], "primaryEmail": ALICE_NEW, "aliases": [ALICE]}
    users = listed(sandbox)
    assert ALICE not in users
    assert users[ALICE_NEW]["id"] == before["id"]
    assert users[ALICE_NEW]["aliases"] == [ALICE]
    assert users[ALICE_NEW]["orgUnitPath"] == before["orgUnitPath"]

    # The same mailbox through the new address and through the old one (an alias).
    for subject in (ALICE_NEW, ALICE):
        cse = gmail(subject)
        pairs = cse.keypairs().list(userId=subject).execute()["cseKeyPairs"]
        assert [p["keyPairId"] for p in pairs] == [keypair["keyPairId"]]
        identity = cse.identities().get(userId=subject, cseEmailAddress=ALICE).execute()
        assert identity["primaryKeyPairId"] == keypair["keyPairId"]

    cse = gmail(ALICE_NEW)
    # Identities are made for the primary address only, with a key pair naming it.
    status, error = refused(cse.identities().create(userId=ALICE_NEW, body=body))
    assert (status, error["message"]) == (
        400, f"emailAddress must be the primary address of the user ({ALICE_NEW})."
    )
    status, error = refused(
        cse.identities().create(
            userId=ALICE_NEW,
            body={"emailAddress": ALICE_NEW, "primaryKeyPairId": keypair["keyPairId"]},
        )
    )
    assert (status, error["message"]) == (
        400, f"Key pair {keypair['keyPairId']} is not for {ALICE_NEW}."
    )
    fresh = upload(gmail, hierarchy, ALICE_NEW)
    cse.identities().create(
        userId=ALICE_NEW, body={"emailAddress": ALICE_NEW, "primaryKeyPairId": fresh["keyPairId"]}
    ).execute()
    # The old address's identity can still be deleted (its address is in the path).
    cse.identities().delete(userId=ALICE_NEW, cseEmailAddress=ALICE).execute()
    status, _ = refused(cse.identities().get(userId=ALICE_NEW, cseEmailAddress=ALICE))
    assert status == 404
    remaining = cse.identities().list(userId=ALICE_NEW).execute()["cseIdentities"]
    assert remaining == [{"emailAddress": ALICE_NEW, "primaryKeyPairId": fresh["keyPairId"]}]
    old_pair = cse.keypairs().get(userId=ALICE_NEW, keyPairId=keypair["keyPairId"]).execute()
    assert old_pair["enablementState"] == "enabled"

    # Persisted in the directory file: a fresh read of the data directory agrees.
    assert Store(sandbox.data_dir).directory().user(ALICE_NEW) is not None
    assert Store(sandbox.data_dir).directory().user(ALICE).primaryEmail == ALICE_NEW  # type: ignore[union-attr]


def test_renames_refused(sandbox: RunningSandbox) -> None:
    assert admin_error(sandbox, "users:rename", {"from": ALICE, "to": BOB}) == (
        409, f"{BOB} is already used by the user {BOB}."
    )
    assert admin_error(sandbox, "users:rename", {"from": "nobody@" + DOMAIN, "to": ALICE_NEW})[
        0
    ] == 404
    assert admin_error(sandbox, "users:rename", {"from": ALICE})[0] == 400


def test_a_deleted_users_address_given_to_someone_new_starts_empty(
    sandbox: RunningSandbox, gmail: Gmail, hierarchy: TestHierarchy
) -> None:
    keypair = upload(gmail, hierarchy, BOB)
    body = {"emailAddress": BOB, "primaryKeyPairId": keypair["keyPairId"]}
    gmail(BOB).identities().create(userId=BOB, body=body).execute()
    old_id = listed(sandbox)[BOB]["id"]

    sandbox.admin("POST", "users:delete", {"email": BOB})
    assert BOB not in listed(sandbox)
    with pytest.raises(RefreshError, match="invalid_grant"):  # no such user: no token
        gmail(BOB).keypairs().list(userId=BOB).execute()

    created = sandbox.admin("POST", "users:create", {"primaryEmail": BOB, "id": "bob-2"})
    assert created["id"] == "bob-2" != old_id
    assert listed(sandbox)[BOB]["id"] == "bob-2"
    cse = gmail(BOB)
    assert cse.keypairs().list(userId=BOB).execute().get("cseKeyPairs", []) == []
    assert cse.identities().list(userId=BOB).execute().get("cseIdentities", []) == []
    assert admin_error(sandbox, "users:create", {"primaryEmail": BOB})[0] == 409
    with pytest.raises(HttpError):  # the old person's key pair is not in the new mailbox
        cse.keypairs().get(userId=BOB, keyPairId=keypair["keyPairId"]).execute()
    assert upload(gmail, hierarchy, BOB)["subjectEmailAddresses"] == [BOB]


def test_a_yaml_directory_file_stays_yaml(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text(
        "domain: example.com\n"
        "users:\n"
        "  - primaryEmail: carol@example.com\n"
        "    orgUnitPath: /Sales\n"
        "  - primaryEmail: admin@example.com\n"
        "    isAdmin: true\n"
    )
    store = Store(tmp_path)
    with store.user_state("carol@example.com") as state:
        state["identities"].append({"emailAddress": "carol@example.com", "primaryKeyPairId": "k"})
    carol_id = store.directory().user("carol@example.com").user_id  # type: ignore[union-attr]
    rename_user(store, "carol@example.com", "carol.c@example.com")
    written = yaml.safe_load(path.read_text())
    assert written["users"][0] == {
        "primaryEmail": "carol.c@example.com",
        "id": carol_id,
        "orgUnitPath": "/Sales",
        "aliases": ["carol@example.com"],
    }
    assert written["users"][1] == {"primaryEmail": "admin@example.com", "isAdmin": True}
    with Store(tmp_path).user_state("carol.c@example.com") as state:
        assert state["identities"] == [
            {"emailAddress": "carol@example.com", "primaryKeyPairId": "k"}
        ]
    with Store(tmp_path).user_state("carol@example.com") as state:
        assert state == {"keypairs": [], "identities": []}
