"""``make install`` into a DESTDIR, then systemd's own tools set up that root: sysusers.d
creates the user the units run as, tmpfiles.d gives the directories the owners and modes the
units expect. No hand-typed useradd or chown."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ["syncd.service", "syncd-report.service", "syncd-report.timer"]
INSTALLED = [
    "usr/share/man/man8/syncd.8",
    "usr/share/man/man5/syncd.yaml.5",
    "usr/share/bash-completion/completions/syncd",
    "usr/share/zsh/site-functions/_syncd",
    "usr/lib/sysusers.d/syncd.conf",
    "usr/lib/tmpfiles.d/syncd.conf",
    *(f"usr/lib/systemd/system/{unit}" for unit in UNITS),
]

pytestmark = pytest.mark.timeout(120)


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: run .ci/system-deps"
    return found


def _service(unit: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "systemd" / unit)
    return parser["Service"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root that `make install DESTDIR=... PREFIX=/usr` filled (this venv's python)."""
    destdir = tmp_path_factory.mktemp("root")
    venv = Path(sys.executable).parent.parent
    done = subprocess.run(
        [_tool("make"), "-C", str(ROOT), "-o", f"{venv}/.installed", "install",
         f"VENV={venv}", f"DESTDIR={destdir}", "PREFIX=/usr",
         f"DOCS={tmp_path_factory.mktemp('docs')}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return destdir


def test_make_install_puts_every_file_in_place(installed: Path) -> None:
    for path in INSTALLED:
        assert (installed / path).is_file(), path
        assert stat.S_IMODE((installed / path).stat().st_mode) == 0o644, path
    for unit in UNITS:
        assert (installed / "usr/lib/systemd/system" / unit).read_bytes() == (
            ROOT / "systemd" / unit
        ).read_bytes()


def test_sysusers_and_tmpfiles_set_up_what_the_units_expect(installed: Path) -> None:
    assert os.geteuid() == 0, "systemd-tmpfiles must run as root to give files to syncd"
    # As after the README's first steps, run as root: a config that only root can read, a
    # master key and a database syncd init wrote as root.
    (installed / "etc/syncd").mkdir(parents=True, mode=0o755)
    (installed / "var/lib/syncd").mkdir(parents=True, mode=0o755)
    for path, mode in (
        ("etc/syncd/syncd.yaml", 0o600),
        ("etc/syncd/issuer.pass", 0o600),
        ("var/lib/syncd/master.key", 0o600),
        ("var/lib/syncd/state.db", 0o644),
    ):
        (installed / path).write_text("x")
        (installed / path).chmod(mode)  # fmt: skip
    for command in (
        [_tool("systemd-sysusers"), f"--root={installed}"],
        [_tool("systemd-tmpfiles"), "--create", f"--root={installed}"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)

    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (installed / "etc/passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: int(line.split(":")[2])
        for line in (installed / "etc/group").read_text().splitlines()
    }
    for unit in ("syncd.service", "syncd-report.service"):
        service = _service(unit)
        user = passwd[service["User"]]
        uid, gid = int(user[2]), groups[service["Group"]]
        assert 0 < uid < 1000 and int(user[3]) == gid, user  # a system user and its group
        state = installed / "var/lib" / service["StateDirectory"]
        assert user[5] == f"/{state.relative_to(installed)}" and user[6] == "/usr/sbin/nologin"
        config = installed / "etc" / service["ConfigurationDirectory"]
        for folder, mode, owner in (
            (state, service["StateDirectoryMode"], (uid, gid)),
            (config, service["ConfigurationDirectoryMode"], (0, gid)),
        ):
            info = folder.stat()
            assert (stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)) == (int(mode, 8), owner)
    for path, mode, owner in (
        ("etc/syncd/syncd.yaml", 0o640, (0, gid)),  # root writes, syncd's group reads
        ("etc/syncd/issuer.pass", 0o640, (0, gid)),
        ("var/lib/syncd/master.key", 0o600, (uid, gid)),  # syncd's, its mode kept
        ("var/lib/syncd/state.db", 0o644, (uid, gid)),
    ):
        info = (installed / path).stat()
        assert (stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)) == (mode, owner), path
