"""``syncd sync --once`` with ``directory.source: google``: a whole deployment (state store,
local KMS, sandbox over HTTP) whose users come from the sandbox's Directory API."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from syncd.sandbox import init_sandbox_data
from syncd.sandbox.store import stable_id
from syncd.state.db import Database
from syncd.state.models import User
from tests.pipeline.conftest import gmail_state
from tests.support.sandbox import ADMIN, DOMAIN

from .conftest import Deployment, at

CSE_GROUP = at("cse")


def write_directory(
    deploy: Deployment, *, archived: tuple[str, ...] = (), group: tuple[str, ...] = ()
) -> None:
    """user00-03 and user06-07 in /CSE (user06 suspended, user07 without a mailbox), the rest
    in /Other; cse@ holds ``group`` and an outside address."""
    users: list[dict[str, Any]] = [{"primaryEmail": ADMIN, "isAdmin": True}]
    for number in range(12):
        email = at(f"user{number:02d}")
        users.append(
            {
                "primaryEmail": email,
                "orgUnitPath": "/CSE" if number in (0, 1, 2, 3, 6, 7) else "/Other",
                "suspended": number == 6,
                "archived": email in archived,
                "isMailboxSetup": number != 7,
            }
        )
    groups = [{"email": CSE_GROUP, "members": [*group, "friend@partner.example"]}]
    root = deploy.hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
    init_sandbox_data(deploy.root / "sandbox", DOMAIN, users, root, groups=groups)


def use_google_source(deploy: Deployment) -> None:
    deploy.update_config(
        directory={
            "source": "google",
            "google": {"org_units": ["/CSE"], "groups": [CSE_GROUP]},
        },
        google={"admin_subject": ADMIN, "max_retries": 1},
    )


def enabled_keypairs(deploy: Deployment, email: str) -> list[dict[str, Any]]:
    keypairs, _identity = gmail_state(deploy, email)
    return [kp for kp in keypairs if kp.get("enablementState") == "enabled"]


def directory_ids(deploy: Deployment) -> dict[str, str]:
    database = Database.open(deploy.config.state.url)
    with database.sessions() as session:
        rows = session.execute(select(User.email, User.directory_id)).all()
    database.close()
    return {email: directory_id for email, directory_id in rows}


def test_sync_once_from_the_google_directory(deployment: Deployment) -> None:
    in_scope = [at(f"user{n:02d}") for n in (0, 1, 2, 3, 4, 5)]
    write_directory(deployment, group=(at("user04"), at("user05")))
    use_google_source(deployment)

    tested = deployment.syncd("directory", "test", "--format", "json")
    assert tested.returncode == 0, tested.stderr
    record = json.loads(tested.stdout)["directory_test"]
    assert (record["source"], record["users_in_scope"], record["enabled"]) == ("google", 7, 6)
    assert sorted(skip["reason"] for skip in record["skipped"]) == [
        f"external member friend@partner.example of group {CSE_GROUP}: not a user of the customer",
        f"{at('user07')}: mailbox not set up",
    ]

    done = deployment.syncd("sync", "--once")
    assert done.returncode == 0, done.stderr
    assert "6 done, 0 failed" in done.stdout, done.stdout
    for email in in_scope:
        assert len(enabled_keypairs(deployment, email)) == 1, email
    assert gmail_state(deployment, at("user08")) == ([], None)  # another unit
    status = json.loads(deployment.syncd("status", "--format", "json").stdout)["users"]
    holders = sorted(row["email"] for row in status if row["key_pair_id"])
    assert holders == in_scope  # not user06 (suspended) nor user07 (no mailbox)
    ids = directory_ids(deployment)
    assert {email: ids[email] for email in in_scope} == {
        email: stable_id("user", email) for email in in_scope
    }

    # user01 is archived, user05 leaves the group: both are deprovisioned (no grace period).
    deployment.update_config(policy={"deprovision_after": 0})
    write_directory(deployment, archived=(at("user01"),), group=(at("user04"),))
    plan = json.loads(deployment.syncd("plan", "--format", "json").stdout)["plan"]
    assert {(a["email"], a["action"]) for a in plan["actions"]} == {
        (at("user01"), "deprovision"),
        (at("user05"), "deprovision"),
    }
    again = deployment.syncd("sync", "--once")
    assert again.returncode == 0, again.stderr
    for email in (at("user01"), at("user05")):
        keypairs, identity = gmail_state(deployment, email)
        assert identity is None and keypairs and not enabled_keypairs(deployment, email)
    for email in (at("user00"), at("user02"), at("user03"), at("user04")):
        assert len(enabled_keypairs(deployment, email)) == 1, email


def test_a_failed_directory_read_stops_the_pass(deployment: Deployment) -> None:
    write_directory(deployment, group=(at("user04"),))
    use_google_source(deployment)
    assert deployment.syncd("sync", "--once").returncode == 0
    writes = deployment.writes()

    # The unit's one page is read, then the listing for the group fails: a pass planned from
    # that partial read would deprovision user04.
    deployment.admin("POST", "faults", {"error_503": 1.0, "skip_requests": 1})
    failed = deployment.syncd("sync", "--once")
    assert failed.returncode == 1, failed.stdout
    last_line = failed.stderr.splitlines()[-1]
    assert last_line == (
        "syncd: google directory source: Directory refused users.list for admin@example.com: "
        "503 UNAVAILABLE: The service is currently unavailable."
    ), failed.stderr
    assert deployment.writes() == writes, "a failed read changed Gmail"
    deployment.admin("POST", "faults", {})
    for email in (at("user00"), at("user04")):
        assert len(enabled_keypairs(deployment, email)) == 1, email
