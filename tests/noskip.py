"""With ``CI`` set (``.ci/run`` sets CI=true), a skipped test is a failed test.

A skip in CI hides a missing tool or server behind a green run, so every skip, whether from
``pytest.skip``, a ``skipif`` mark or ``importorskip``, at collection or in a test, is turned
into a failure that names the reason. Expected failures (``xfail``) are not skips and stay as
they are. Loaded by tests/conftest.py; a plain module so that a test can load it with ``-p``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _reason(longrepr: Any) -> str:
    reason = (
        str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    )
    return reason.removeprefix("Skipped: ")


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = f"skipped in CI (CI is set), which is a failure: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if _in_ci() and report.skipped:
        _fail(report)
