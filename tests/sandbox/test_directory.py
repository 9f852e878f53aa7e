"""Directory users.list and members.list in the sandbox, through admin directory_v1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from tests.support.sandbox import ADMIN, DOMAIN, RunningSandbox

from .conftest import api, credentials_for

SCOPES = [
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
]


@pytest.fixture
def directory(sandbox: RunningSandbox) -> Any:
    return api(sandbox, "admin", "directory_v1", credentials_for(sandbox, ADMIN, SCOPES))


def emails(directory: Any, **params: Any) -> list[str]:
    found: list[str] = []
    token = None
    while True:
        page = directory.users().list(pageToken=token, **params).execute()
        found += [u["primaryEmail"].split("@")[0] for u in page.get("users", [])]
        token = page.get("nextPageToken")
        if not token:
            return found


def test_all_users_over_pages(directory: Any) -> None:
    first = directory.users().list(customer="my_customer", maxResults=2).execute()
    assert len(first["users"]) == 2 and first["nextPageToken"]
    assert emails(directory, customer="my_customer", maxResults=2) == [
        "admin",
        "alice",
        "bob",
        "carol",
        "dave",
        "erin",
    ]
    assert emails(directory, domain=DOMAIN) == emails(directory, customer="my_customer")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("isSuspended=false", ["admin", "alice", "bob", "carol", "erin"]),
        ("isSuspended=true", ["dave"]),
        ("orgUnitPath='/Sales'", ["alice", "carol"]),
        ("orgUnitPath=/Sales/EMEA", ["carol"]),
        ("email:ali*", ["alice"]),
        (f"email=bob@{DOMAIN}", ["bob"]),
        ("Employment.costCenter=42", ["alice"]),
        ("orgUnitPath='/Sales' isSuspended=false Employment.costCenter=7", ["carol"]),
        ("givenName:Ali familyName=archer", ["alice"]),
        ("isAdmin=true", ["admin"]),
    ],
)
def test_query(directory: Any, query: str, expected: list[str]) -> None:
    assert emails(directory, customer="my_customer", query=query) == expected


def test_projection_and_field_mask(directory: Any) -> None:
    basic = directory.users().list(customer="my_customer", query="email:alice").execute()
    assert "customSchemas" not in basic["users"][0]
    custom = (
        directory.users()
        .list(
            customer="my_customer",
            query="email:alice",
            projection="custom",
            customFieldMask="Employment",
        )
        .execute()
    )
    alice = custom["users"][0]
    assert alice["customSchemas"] == {"Employment": {"costCenter": "42", "cse": True}}
    assert alice["id"] and alice["orgUnitPath"] == "/Sales" and alice["isMailboxSetup"] is True


def _status(call: Any) -> int:
    with pytest.raises(HttpError) as caught:
        call.execute()
    assert "error" in json.loads(caught.value.content)
    return caught.value.status_code  # type: ignore[no-any-return]


def test_refusals(directory: Any) -> None:
    assert _status(directory.users().list(customer="my_customer", maxResults=501)) == 400
    assert _status(directory.users().list()) == 400
    assert _status(directory.users().list(domain="other.example")) == 403
    assert _status(directory.users().list(customer="my_customer", query="shoeSize=9")) == 400
    assert _status(directory.members().list(groupKey=f"nobody@{DOMAIN}")) == 404


def members(directory: Any, group: str, **params: Any) -> list[tuple[str, str, str]]:
    page = directory.members().list(groupKey=group, **params).execute()
    return [(m["email"].split("@")[0], m["type"], m["role"]) for m in page.get("members", [])]


def test_members_direct_and_derived(directory: Any) -> None:
    sales = f"sales@{DOMAIN}"
    assert members(directory, sales) == [("alice", "USER", "OWNER"), ("emea", "GROUP", "MEMBER")]
    assert members(directory, sales, includeDerivedMembership=True) == [
        ("alice", "USER", "OWNER"),
        ("emea", "GROUP", "MEMBER"),
        ("carol", "USER", "MEMBER"),
    ]
    derived_all = members(directory, f"all@{DOMAIN}", includeDerivedMembership=True)
    assert sorted(m[0] for m in derived_all if m[1] == "USER") == ["alice", "bob", "carol"]
    assert members(directory, sales, roles="OWNER") == [("alice", "USER", "OWNER")]


def test_members_paging(directory: Any) -> None:
    group = f"all@{DOMAIN}"
    first = (
        directory.members()
        .list(groupKey=group, includeDerivedMembership=True, maxResults=2)
        .execute()
    )
    assert len(first["members"]) == 2
    rest = (
        directory.members()
        .list(
            groupKey=group,
            includeDerivedMembership=True,
            maxResults=2,
            pageToken=first["nextPageToken"],
        )
        .execute()
    )
    assert {m["email"] for m in first["members"]}.isdisjoint(m["email"] for m in rest["members"])
