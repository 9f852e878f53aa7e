"""The test PyKMIP server's ``stop()`` leaves no process behind.

``pykmip-server`` forks a ``multiprocessing`` manager and a policy-directory monitor; killing
only the parent left them running after the suite (and busy during it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.kmip.server import start_pykmip_server


def _group_members(pgid: int) -> set[int]:
    """Live processes (not zombies) whose process group is ``pgid``, read from /proc."""
    members: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.add(int(entry.name))
    return members


def test_stop_kills_the_server_and_the_processes_it_forked(tmp_path: Path) -> None:
    server = start_pykmip_server(tmp_path / "pykmip")
    pid = server.process.pid
    try:
        assert os.getpgid(pid) == pid, "the server should lead a process group of its own"
        deadline = time.monotonic() + 10
        while len(_group_members(pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        forked = _group_members(pid) - {pid}
        assert forked, "pykmip-server forked no children: this test no longer checks anything"
    finally:
        server.stop()
    deadline = time.monotonic() + 5
    while _group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_members(pid), f"left running after stop(): {sorted(_group_members(pid))}"
    assert server.process.returncode is not None
