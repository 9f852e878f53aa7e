"""Start-up loads only what a command uses: ``--version`` and ``--help`` (of syncd and of a
command) import none of the heavy libraries. Checked with ``python -X importtime``, not timed
(the timing is bench/startup.py's)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = (
    "sqlalchemy",
    "alembic",
    "pydantic",
    "pydantic_core",
    "cryptography",
    "googleapiclient",
    "google.auth",
    "google.oauth2",
    "httplib2",
    "ldap3",
    "kmip",
    "apscheduler",
    "prometheus_client",
    "yaml",
    "tqdm",
    "wcwidth",
)


def imported_modules(*args: str) -> list[str]:
    """Every module ``python -X importtime -m syncd ARGS`` imported, by its dotted name."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "syncd", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["health", "--help"]])
def test_no_heavy_library_is_imported(args: list[str]) -> None:
    modules = imported_modules(*args)
    assert "syncd.cli" in modules  # the measurement saw syncd's own imports
    heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)})
    assert heavy == [], f"syncd {' '.join(args)} imported {heavy}"
