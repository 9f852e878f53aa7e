"""``serve`` in a subprocess, as ``syncd sandbox serve`` runs it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httplib2
import pytest

from tests.support.sandbox import start_sandbox
from tests.support.testca import TestHierarchy


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


START_SECONDS = 60
"""For the new process to import the sandbox and answer: seconds when the machine is idle, but
over 20 s on a 2-core machine shared with other test runs (load 10 and more)."""


@pytest.mark.timeout(START_SECONDS + 60)
def test_serve_in_a_subprocess(tmp_path: Path, hierarchy: TestHierarchy) -> None:
    start_sandbox(tmp_path / "data", hierarchy).stop()
    port = _free_port()
    code = (
        "import sys; from pathlib import Path; from syncd.sandbox import serve; "
        "serve('127.0.0.1', int(sys.argv[1]), Path(sys.argv[2]))"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(port), str(tmp_path / "data")])
    try:
        url = f"http://127.0.0.1:{port}/sandbox/v1/clock"
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                response, content = httplib2.Http(timeout=2).request(url)
                break
            except OSError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.1)
        assert response.status == 200 and json.loads(content)["now"].endswith("Z")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
