"""CRL fixtures: the real openssl binary, and a test hierarchy with leaves to revoke."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

OpenSSL = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def openssl() -> OpenSSL:
    """Run the real openssl binary (never checked: the caller asserts on the result); a
    missing binary fails the test (apt-get install openssl)."""
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("openssl not found on PATH; install it with: apt-get install -y openssl")

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
        )

    return run


def openssl_hex(serial: int) -> str:
    """A serial as openssl prints it: uppercase hex, an even number of digits."""
    digits = format(serial, "X")
    return digits.rjust(len(digits) + len(digits) % 2, "0")
