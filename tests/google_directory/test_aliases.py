"""The google source reads users' aliases from the sandbox's Directory API over HTTP, as
Google returns them (the field is absent for a user without aliases)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from syncd.sandbox.directory import user_view
from syncd.sandbox.store import DirectoryData, DirectoryUser
from tests.support.sandbox import ADMIN, DOMAIN, RunningSandbox
from tests.support.testca import TestHierarchy

from .conftest import at, source_for, start

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, hierarchy: TestHierarchy
) -> Iterator[RunningSandbox]:
    users = [
        {"primaryEmail": ADMIN, "isAdmin": True, "orgUnitPath": "/IT"},
        {"primaryEmail": at("alice"), "orgUnitPath": "/Sales",
         "aliases": [at("al"), f"Alice.Smith@{DOMAIN.upper()}", at("alice")]},
        {"primaryEmail": at("bob"), "orgUnitPath": "/Sales"},
        {"primaryEmail": at("carol"), "orgUnitPath": "/Sales", "aliases": ["carol"]},
    ]
    running = start(tmp_path_factory.mktemp("sandbox"), hierarchy, users, [])
    yield running
    running.stop()


def test_the_google_source_returns_the_aliases(sandbox: RunningSandbox) -> None:
    snapshot = source_for(sandbox, org_units=["/Sales"]).read(NOW)
    assert {u.email: u.aliases for u in snapshot.users} == {
        at("alice"): (at("al"), f"alice.smith@{DOMAIN}"),
        at("bob"): (),
        at("carol"): (),  # "carol" is no address: left out with a warning, carol kept
    }


def test_the_sandbox_leaves_the_field_out_without_aliases() -> None:
    directory = DirectoryData(domain="example.com", users=[
        DirectoryUser(primaryEmail="a@example.com", aliases=["b@example.com"]),
        DirectoryUser(primaryEmail="c@example.com"),
    ])
    views = [user_view(u, directory, "basic", []) for u in directory.users]
    assert views[0]["aliases"] == ["b@example.com"]
    assert "aliases" not in views[1]
