"""The systemd units pass ``systemd-analyze verify`` (installed by .ci/system-deps)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_AT = "/opt/syncd/bin/syncd"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd exists only on Linux")
def test_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run .ci/system-deps (apt-get install systemd)"
    # verify checks that ExecStart exists: point it at this checkout's syncd instead of the
    # README's /opt/syncd; nothing else in the units changes.
    syncd = Path(sys.executable).with_name("syncd")
    assert syncd.exists(), syncd
    names = ["syncd.service", "syncd-report.service", "syncd-report.timer"]
    for name in names:
        text = (UNITS / name).read_text()
        if name.endswith(".service"):
            assert INSTALLED_AT in text
        (tmp_path / name).write_text(text.replace(INSTALLED_AT, str(syncd)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr


def test_service_unit_hardening() -> None:
    text = (UNITS / "syncd.service").read_text()
    for line in (
        "Type=notify",
        "User=syncd",
        "StateDirectory=syncd",
        "ConfigurationDirectory=syncd",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert f"\n{line}\n" in text, line
    report = (UNITS / "syncd-report.service").read_text()
    assert "report --output /var/lib/syncd/report.html --format html" in report
