"""Fixtures: a sandbox whose directory exercises every scope rule of the google source, and
(re-exported from tests/pipeline) a whole deployment for end-to-end passes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from syncd.config import GoogleSourceConfig
from syncd.directory.google import GoogleSource
from syncd.google.retry import RetryPolicy
from syncd.sandbox import SandboxServer, init_sandbox_data
from syncd.sandbox.seed import DEFAULT_DELEGATED_SCOPES
from tests.pipeline.conftest import Deployment, deployment, pipeline_ca
from tests.support.sandbox import (
    ADMIN,
    DOMAIN,
    SERVICE_ACCOUNT,
    RunningSandbox,
    register_service_account,
)
from tests.support.testca import TestHierarchy, make_test_hierarchy

__all__ = ["Deployment", "deployment", "pipeline_ca"]

FAST_RETRY = RetryPolicy(max_retries=2, base_delay=0.005, max_delay=0.02, max_retry_after=0.02)
ALICE_ID = "100000000000000000001"


def at(name: str) -> str:
    return f"{name}@{DOMAIN}"


def scope_users() -> list[dict[str, Any]]:
    """One user per rule: who each selector picks and who each exclusion catches."""
    return [
        {"primaryEmail": ADMIN, "isAdmin": True, "orgUnitPath": "/IT"},
        {"primaryEmail": at("alice"), "id": ALICE_ID, "orgUnitPath": "/Sales"},
        {"primaryEmail": at("carol"), "orgUnitPath": "/Sales/EMEA"},
        {"primaryEmail": at("dave"), "orgUnitPath": "/Sales", "suspended": True},
        {"primaryEmail": at("oscar"), "orgUnitPath": "/Sales", "archived": True},
        {"primaryEmail": at("erin"), "orgUnitPath": "/Sales", "isMailboxSetup": False},
        {"primaryEmail": at("salesperson"), "orgUnitPath": "/SalesOps"},
        {"primaryEmail": at("bob"), "orgUnitPath": "/Engineering"},
        {"primaryEmail": at("frank"), "orgUnitPath": "/Engineering/Platform"},
        {
            "primaryEmail": at("gina"),
            "orgUnitPath": "/Legal",
            "customSchemas": {"Security": {"cseEnabled": True}},
        },
        {
            "primaryEmail": at("hank"),
            "orgUnitPath": "/Legal",
            "customSchemas": {"Security": {"cseEnabled": False}},
        },
        {"primaryEmail": at("ivan"), "orgUnitPath": "/Board", "name": {"givenName": "Ivan"}},
        {"primaryEmail": at("zed"), "orgUnitPath": "/Other"},
    ]


def scope_groups() -> list[dict[str, Any]]:
    """cse@ holds bob, alice, an outside address and the nested group platform@ (frank and
    another outside address)."""
    return [
        {
            "email": at("cse"),
            "members": [at("bob"), at("alice"), at("platform"), "partner@other.example"],
        },
        {"email": at("platform"), "members": [at("frank"), "contractor@vendor.example"]},
    ]


@pytest.fixture(scope="session")
def hierarchy() -> TestHierarchy:
    return make_test_hierarchy()


def start(
    data_dir: Path,
    hierarchy: TestHierarchy,
    users: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    scopes: tuple[str, ...] = DEFAULT_DELEGATED_SCOPES,
) -> RunningSandbox:
    root = hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
    init_sandbox_data(data_dir, DOMAIN, users, root, groups=groups)
    server = SandboxServer(data_dir).start()
    key_info = register_service_account(data_dir, SERVICE_ACCOUNT, server.token_uri, scopes)
    return RunningSandbox(server, data_dir, key_info, hierarchy)


@pytest.fixture
def sandbox(tmp_path: Path, hierarchy: TestHierarchy) -> Iterator[RunningSandbox]:
    running = start(tmp_path / "sandbox", hierarchy, scope_users(), scope_groups())
    yield running
    running.stop()


def source_for(sandbox: RunningSandbox, **scope: Any) -> GoogleSource:
    """A google source with the selectors ``scope`` (config keys), over HTTP to ``sandbox``."""
    return GoogleSource(
        GoogleSourceConfig.model_validate(scope), sandbox.google_config(), retry=FAST_RETRY
    )
