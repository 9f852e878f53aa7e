"""Start-up loads only what a command uses: ``--version`` and ``--help`` (of syncd and of a
command) import none of the heavy libraries; ``status`` and ``health`` load the configuration
and SQLAlchemy Core, and nothing else heavy (no Alembic, no ORM, no Google or KMS client).
Checked with ``python -X importtime``, not timed (the timing is bench/startup.py's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.installation import make_installation

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


# What a read-only command on the state store must still not load: the schema check reads
# alembic_version with plain SQL, the queries are SQLAlchemy Core.
HEAVY_FOR_QUERIES = (
    "alembic",
    "mako",
    "sqlalchemy.orm",
    "syncd.state.models",
    "cryptography",
    "googleapiclient",
    "google.auth",
    "google.oauth2",
    "httplib2",
    "ldap3",
    "kmip",
    "waitress",
    "apscheduler",
    "prometheus_client",
    "tqdm",
)


def imported_modules(*args: str) -> list[str]:
    """Every module ``python -X importtime -m syncd ARGS`` imported, by its dotted name."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "syncd", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-2000:]
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


def _loaded(modules: list[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted({m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The configuration of an initialised SQLite installation whose last sync pass finished
    just now (so ``health`` is healthy and reads it)."""
    return make_installation(tmp_path_factory.mktemp("installed"))


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--format", "json"], ["status", "--other-key-format"], ["health"]],
)
def test_read_only_commands_load_no_orm_nor_clients(installed: Path, args: list[str]) -> None:
    modules = imported_modules("--config", str(installed), *args)
    assert "sqlalchemy.engine" in modules  # the command did open the state store
    assert _loaded(modules, HEAVY_FOR_QUERIES) == [], f"syncd {' '.join(args)}"
