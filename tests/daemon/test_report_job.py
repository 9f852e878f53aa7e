"""The daemon's report cron job: ``syncd report`` when this version has it, else one log line."""

from __future__ import annotations

import importlib.util

import pytest

from syncd.daemon import run_report_job

from .conftest import Deployment


def test_report_job(deployment: Deployment, caplog: pytest.LogCaptureFixture) -> None:
    output = deployment.root / "report.html"
    deployment.update_config(report={"output": str(output)})
    assert deployment.syncd("sync", "--once").returncode == 0
    with caplog.at_level("INFO", logger="syncd.daemon"):
        run_report_job(deployment.config)
    if importlib.util.find_spec("syncd.report") is None:
        assert "reports not available in this version" in caplog.text
        assert not output.exists()
    else:
        assert f"report written to {output}" in caplog.text, caplog.text
        assert output.stat().st_size > 0
