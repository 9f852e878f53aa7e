"""With CI set, any skip fails the run (tests/noskip.py); without it, a skip is a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# Each test runs man, groff, bash, zsh or pytest: seconds; a hung one fails after this.
pytestmark = pytest.mark.timeout(60)

SKIPPING = """
import pytest

def test_skipped_in_the_test():
    pytest.skip("no chromium")

@pytest.mark.skipif(True, reason="not on this platform")
def test_skipped_by_a_mark():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""

SKIPPED_MODULE = """
import pytest

pytest.importorskip("a_module_that_is_not_installed")

def test_never_collected():
    pass
"""


def _pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(TESTS)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugin under test
    (folder / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "noskip", "-p", "no:cacheprovider", "-rA",
         "-q", str(folder)],
        capture_output=True, text=True, cwd=folder, env=env, timeout=120,
    )  # fmt: skip


def test_in_ci_every_skip_fails_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    result = _pytest(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    last = result.stdout.strip().splitlines()[-1]
    # pytest.skip() in the test fails it; a skipif mark acts in setup, so it is an error.
    assert "1 failed" in last and "1 error" in last, last
    assert "1 passed" in last and "1 xfailed" in last, last
    assert "skipped" not in last, last
    assert "skipped in CI (CI is set), which is a failure: no chromium" in result.stdout
    assert "which is a failure: not on this platform" in result.stdout


def test_in_ci_a_module_skipped_at_collection_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "test_module_skip.py").write_text(SKIPPED_MODULE)
    result = _pytest(tmp_path, "true")
    assert result.returncode == 2, result.stdout  # pytest: interrupted by a collection error
    assert "1 error" in result.stdout.strip().splitlines()[-1]
    assert "which is a failure: could not import 'a_module_that_is_not_installed'" in (
        result.stdout
    )


def test_outside_ci_a_skip_stays_a_skip(tmp_path: Path) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    for ci in (None, "false"):
        result = _pytest(tmp_path, ci)
        assert result.returncode == 0, result.stdout
        last = result.stdout.strip().splitlines()[-1]
        assert "2 skipped" in last and "1 passed" in last, last
