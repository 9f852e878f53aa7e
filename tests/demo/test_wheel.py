"""The wheel: it holds no test-only module, and ``pip install`` of it into a fresh virtualenv
runs the rehearsal from a folder outside the checkout (dependencies come from the package
registry, as for an administrator).

Marked ``wheel`` (about a minute: a build, a fresh virtualenv, an install, a rehearsal);
``make test`` runs it with the rest, ``-m "not wheel"`` leaves it out while iterating."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
MOVED_TO_TESTS = {
    "syncd/pki/testca.py",
    "syncd/pki/testcerts.py",
    "syncd/directory/slapd.py",
    "syncd/sandbox/testing.py",
}

pytestmark = pytest.mark.wheel


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    done = subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command[:4]} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def _test_only(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (
        name in MOVED_TO_TESTS
        or parts[0] in {"tests", "bench"}
        or any(part.startswith(("test_", "conftest")) for part in parts)
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
         out, 300)
    (built,) = out.glob("syncd-*.whl")
    return built


def test_wheel_holds_the_demo_and_no_test_only_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "syncd/cli/demo.py" in names and "syncd/demo.yaml" in names
    assert "syncd/pki/rehearsal_ca.py" in names and "syncd/sandbox/server.py" in names
    assert [name for name in names if _test_only(name)] == []


def test_demo_from_a_fresh_virtualenv_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], tmp_path, 900)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import syncd; print(syncd.__file__)"], elsewhere, 60)
    assert Path(where.stdout.strip()).is_relative_to(env_dir)
    done = _run([str(env_dir / "bin" / "syncd"), "demo", "--dir", "rehearsal"], elsewhere, 300)
    assert "pass 1: 28 done, 0 failed, 0 held" in done.stdout
    assert "pass 2: 0 done, 0 failed, 0 held" in done.stdout
    assert (elsewhere / "rehearsal" / "state.db").is_file()
    assert not (elsewhere / "demo").exists()
