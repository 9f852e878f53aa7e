"""Fixtures: a sandbox on a free port and a GmailCSE client configured for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.google.gmail import GmailCSE
from syncd.google.retry import RetryPolicy
from tests.support.sandbox import RunningSandbox, start_sandbox
from tests.support.testca import TestHierarchy, make_test_hierarchy

FAST_RETRY = RetryPolicy(max_retries=8, base_delay=0.005, max_delay=0.05, max_retry_after=0.05)


@pytest.fixture(scope="session")
def hierarchy() -> TestHierarchy:
    return make_test_hierarchy()


@pytest.fixture
def sandbox(tmp_path: Path, hierarchy: TestHierarchy) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path / "sandbox", hierarchy, extra_users=50)
    yield running
    running.stop()


@pytest.fixture
def client(sandbox: RunningSandbox) -> GmailCSE:
    return GmailCSE(sandbox.google_config(), retry=FAST_RETRY, page_size=3)
