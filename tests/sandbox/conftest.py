"""Fixtures: a sandbox on a free port with the sample directory, and Google API clients built
with the real google-api-python-client and google-auth libraries pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from google.oauth2 import service_account
from googleapiclient.discovery import build

from tests.support.sandbox import RunningSandbox, start_sandbox
from tests.support.testca import TestHierarchy, make_test_hierarchy

GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.settings.basic"


@pytest.fixture(scope="session")
def hierarchy() -> TestHierarchy:
    return make_test_hierarchy()


@pytest.fixture(scope="session")
def other_hierarchy() -> TestHierarchy:
    """A second CA the sandbox does not trust."""
    return make_test_hierarchy(organization="Untrusted Test")


@pytest.fixture
def sandbox(tmp_path: Path, hierarchy: TestHierarchy) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path / "sandbox", hierarchy)
    yield running
    running.stop()


def credentials_for(
    sandbox: RunningSandbox, subject: str | None, scopes: list[str]
) -> service_account.Credentials:
    creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        sandbox.key_info, scopes=scopes, subject=subject
    )
    return cast(service_account.Credentials, creds)


def api(sandbox: RunningSandbox, name: str, version: str, creds: Any) -> Any:
    return build(
        name,
        version,
        credentials=creds,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": sandbox.server.url},
    )


@pytest.fixture
def gmail(sandbox: RunningSandbox) -> Callable[..., Any]:
    """``gmail(user)``: a gmail v1 service impersonating ``user``; returns ``.cse()``."""

    def make(user: str, scopes: list[str] | None = None) -> Any:
        creds = credentials_for(sandbox, user, scopes or [GMAIL_SCOPE])
        return api(sandbox, "gmail", "v1", creds).users().settings().cse()

    return make
