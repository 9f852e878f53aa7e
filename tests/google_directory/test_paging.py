"""Complete paging of users.list (500 a page) and members.list (200 a page) over a directory
of 1,200 users, and failures in the middle of a listing: every one is a SourceError."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.directory.base import SourceError
from tests.support.sandbox import ADMIN, RunningSandbox
from tests.support.testca import TestHierarchy

from .conftest import at, source_for, start

NOW = datetime(2030, 1, 1, tzinfo=UTC)
COUNT = 1200


def big_users() -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = [{"primaryEmail": ADMIN, "isAdmin": True, "orgUnitPath": "/IT"}]
    users += [{"primaryEmail": at(f"u{i:04d}"), "orgUnitPath": "/Big"} for i in range(COUNT)]
    return users


def big_groups() -> list[dict[str, Any]]:
    """big@ holds u0000-u0249 and the nested group more@ (u1000-u1199): 450 users."""
    return [
        {"email": at("big"), "members": [*(at(f"u{i:04d}") for i in range(250)), at("more")]},
        {"email": at("more"), "members": [at(f"u{i:04d}") for i in range(1000, 1200)]},
    ]


@pytest.fixture
def big(tmp_path: Path, hierarchy: TestHierarchy) -> Iterator[RunningSandbox]:
    running = start(tmp_path / "big", hierarchy, big_users(), big_groups())
    yield running
    running.stop()


def test_every_page_is_read(big: RunningSandbox) -> None:
    big.admin("POST", "stats:reset")
    snapshot = source_for(big, org_units=["/Big"]).read(NOW)
    assert len(snapshot.users) == COUNT and all(u.enabled for u in snapshot.users)
    assert len({u.directory_id for u in snapshot.users}) == COUNT
    assert big.requests("directory.users.list") == 3  # 500 + 500 + 200

    big.admin("POST", "stats:reset")
    members = source_for(big, groups=[at("big")]).read(NOW)
    assert len(members.users) == 450 and members.skipped == ()
    assert big.requests("directory.users.list") == 3  # the domain's 1,201 users
    assert big.requests("directory.members.list") == 3  # 450 users + more@: 200 + 200 + 51


@pytest.mark.parametrize(
    ("fault", "expected", "requests"),
    [
        ("error_500", "500 INTERNAL: Internal error encountered.", 4),
        ("error_503", "503 UNAVAILABLE: The service is currently unavailable.", 4),
        # httplib2 itself sends a request again once when the connection is dropped.
        ("drop", "did not answer users.list", 7),
    ],
)
def test_failure_after_the_first_users_page(
    big: RunningSandbox, fault: str, expected: str, requests: int
) -> None:
    big.admin("POST", "stats:reset")
    big.admin("POST", "faults", {fault: 1.0, "skip_requests": 1})
    with pytest.raises(SourceError) as caught:
        source_for(big, org_units=["/Big"]).read(NOW)
    message = str(caught.value)
    assert message.startswith("google directory source: ") and "users.list" in message, message
    assert expected in message and "\n" not in message
    # page 1, then page 2 tried 3 times (FAST_RETRY: 2 retries)
    assert big.requests("directory.users.list") == requests


def test_failure_in_the_middle_of_members(big: RunningSandbox) -> None:
    big.admin("POST", "stats:reset")
    big.admin("POST", "faults", {"error_500": 1.0, "skip_requests": 4})  # 3 users + 1 members
    with pytest.raises(SourceError, match=r"members\.list .*500"):
        source_for(big, groups=[at("big")]).read(NOW)
    assert big.requests("directory.members.list") == 4
