"""The systemd units pass ``systemd-analyze verify``, and ``systemd-analyze security`` rates
their hardening (systemd is installed by .ci/system-deps)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_AT = "/opt/syncd/bin/syncd"

# systemd-analyze security's overall exposure, times ten (1.2 is "12"): the units score 1.2,
# and dropping any one hardening line raises it (CapabilityBoundingSet= alone to 3.0).
EXPOSURE_THRESHOLD = 12
# The checks the units are allowed to fail, each for a reason: syncd is a network client
# (Google, the KMS, the database, SMTP) that runs from the host's file system.
ACCEPTED_EXPOSURES = {
    "PrivateNetwork=",  # it talks to Google, the KMS, PostgreSQL
    "RestrictAddressFamilies=~AF_(INET|INET6)",  # the same
    "RestrictAddressFamilies=~AF_UNIX",  # sd_notify, a local PostgreSQL socket, syslog
    "IPAddressDeny=",  # the addresses of Google, the KMS and the database are not fixed
    "RootDirectory=/RootImage=",  # runs from the installed venv, not an image
    "PrivateMounts=",  # ProtectSystem=strict and PrivateTmp= already give it its own mounts
    "DeviceAllow=",  # PrivateDevices=yes already hides every device
}


def _security(analyze: str, unit: Path, threshold: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={threshold}", "--json=short",
         str(unit)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


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


@pytest.mark.parametrize(
    ("unit", "also_accepted"),
    [
        ("syncd.service", set()),
        # The report is written 0640 (UMask=0027) for a web server's group to read.
        ("syncd-report.service", {"UMask="}),
    ],
)
def test_unit_hardening_rated_by_systemd_analyze_security(
    unit: str, also_accepted: set[str]
) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run .ci/system-deps (apt-get install systemd)"
    rated = _security(analyze, UNITS / unit, EXPOSURE_THRESHOLD)
    assert rated.returncode == 0, f"{unit}: exposure above {EXPOSURE_THRESHOLD / 10}"
    checks = json.loads(rated.stdout)
    failed = {check["name"] for check in checks if not check["set"]}
    assert failed <= ACCEPTED_EXPOSURES | also_accepted, failed - ACCEPTED_EXPOSURES
    passed = {check["name"] for check in checks if check["set"]}
    for name in (
        "User=/DynamicUser=",
        "ProtectSystem=",
        "NoNewPrivileges=",
        "PrivateTmp=",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "SystemCallFilter=~@privileged",
    ):
        assert name in passed, (unit, name)


def test_the_threshold_catches_a_weaker_unit(tmp_path: Path) -> None:
    """The same check fails a copy of syncd.service without its capability bounding set."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run .ci/system-deps (apt-get install systemd)"
    text = (UNITS / "syncd.service").read_text()
    assert "\nCapabilityBoundingSet=\n" in text
    weaker = tmp_path / "syncd.service"
    weaker.write_text(text.replace("\nCapabilityBoundingSet=\n", "\n"))
    assert _security(analyze, weaker, EXPOSURE_THRESHOLD).returncode != 0


def test_service_unit_lifecycle() -> None:
    text = (UNITS / "syncd.service").read_text()
    for line in (
        "Type=notify",
        "User=syncd",
        "StateDirectory=syncd",
        "ConfigurationDirectory=syncd",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert f"\n{line}\n" in text, line
    report = (UNITS / "syncd-report.service").read_text()
    assert "report --output /var/lib/syncd/report.html --format html" in report
