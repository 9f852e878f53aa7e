"""``syncd sync`` on a terminal and in a script: the progress bar and the log lines share a real
pseudo-terminal without a log line landing inside the bar; ``--format json`` on ``sync`` and
``resync`` prints the pass's record alone on stdout."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator

import pytest

from tests.conftest import _migrate
from tests.pipeline.conftest import (
    Deployment,
    build_deployment,
    import_pipeline_issuer,
    pipeline_ca,
    sandbox_users,
)
from tests.support.testca import TestHierarchy

__all__ = ["pipeline_ca"]

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ")
BAR_LINE = re.compile(r"^\[[#.]{30}\] \d+/\d+ users, \d+ failed \[[0-9:]+<[0-9:?]+\]$")


USERS = sandbox_users(4)


@pytest.fixture(scope="module")
def sqlite_deployment(
    tmp_path_factory: pytest.TempPathFactory, pipeline_ca: TestHierarchy
) -> Iterator[Deployment]:
    """The pipeline tests' deployment on SQLite, with four users and the issuer imported."""
    tmp_path = tmp_path_factory.mktemp("terminal")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    deploy = build_deployment(tmp_path, url, pipeline_ca)
    try:
        deploy.set_users(USERS)
        deploy.update_config(logging={"level": "INFO", "format": "auto"})
        import_pipeline_issuer(deploy, pipeline_ca)
        yield deploy
    finally:
        deploy.sandbox.stop()


def _run_on_a_terminal(deploy: Deployment, *args: str) -> tuple[int, str, str]:
    """Run syncd with stderr on a pseudo-terminal 200 columns wide: (code, stdout, terminal)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    attributes = termios.tcgetattr(follower)
    attributes[1] &= ~termios.ONLCR  # keep "\n" as written (no "\r\n" translation)
    termios.tcsetattr(follower, termios.TCSANOW, attributes)
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCD_CRASH_AT", "JOURNAL_STREAM")}
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(deploy.config_path), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**env, "COLUMNS": "200"},
    )
    os.close(follower)
    written = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every holder of the terminal has closed it
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    return process.wait(timeout=120), stdout, written.decode()


def screen_lines(written: str) -> list[str]:
    """What a terminal shows: a carriage return moves back to column 0 and what follows
    overwrites the line; a newline ends it (a line cleared with spaces reads as empty)."""
    lines, line, column = [], [" "] * 0, 0
    for char in written:
        if char == "\n":
            lines.append("".join(line).rstrip())
            line, column = [], 0
        elif char == "\r":
            column = 0
        elif char == "\x1b":
            raise AssertionError(f"unexpected escape sequence in {written!r}")
        else:
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    if line:
        lines.append("".join(line).rstrip())
    return [text for text in lines if text]


def test_log_lines_are_printed_above_the_bar_never_inside_it(
    sqlite_deployment: Deployment,
) -> None:
    code, stdout, terminal = _run_on_a_terminal(sqlite_deployment, "sync", "--once", "-v")
    assert code == 0, terminal[-3000:]
    assert stdout.startswith("pass ") and "4 done, 0 failed" in stdout
    lines = screen_lines(terminal)
    bars = [line for line in lines if line.startswith("[")]
    logs = [line for line in lines if not line.startswith("[")]
    assert bars and logs
    for line in bars:
        assert BAR_LINE.match(line), f"a log line inside the bar: {line!r}"
    for line in logs:
        assert LOG_LINE.match(line) or line.startswith(" "), f"mangled log line: {line!r}"
        assert "users," not in line, f"the bar inside a log line: {line!r}"
    # The bar was drawn, then log lines came while it was shown: the bar ends the terminal,
    # complete, and log lines were printed after its first drawing (above its redrawn self).
    assert lines[-1].startswith("[" + "#" * 30 + "] 4/4 users, 0 failed")
    first_bar = terminal.index("] 0/4 users")
    assert LOG_LINE.search(terminal[first_bar:].split("\r")[-1]) is None
    after_first_bar = screen_lines(terminal[first_bar:])
    assert any(LOG_LINE.match(line) for line in after_first_bar)


def _summary_counts(line: str) -> tuple[int, int, int, int]:
    found = re.fullmatch(
        r"pass \d+: (\d+) done, (\d+) failed, (\d+) held, (\d+) deprovisions blocked", line
    )
    assert found, line
    done, failed, held, blocked = (int(group) for group in found.groups())
    return done, failed, held, blocked


def test_sync_and_resync_print_the_pass_as_json_on_stdout_only(
    sqlite_deployment: Deployment,
) -> None:
    deploy = sqlite_deployment
    status = deploy.syncd("status", "--format", "json")
    assert status.returncode == 0, status.stderr
    active = [row for row in json.loads(status.stdout)["users"] if row["state"] == "active"]
    synced = deploy.syncd("-v", "sync", "--once", "--format", "json")
    assert synced.returncode == 0, synced.stderr
    record = json.loads(synced.stdout)["pass"]
    assert (record["done"], record["failed"], record["clean"]) == (4 - len(active), 0, True)
    assert record["failures"] == [] and isinstance(record["run_id"], int)
    user = USERS[0]
    as_json = deploy.syncd("resync", "--user", user, "--format", "json", "-v")
    assert as_json.returncode == 0, as_json.stderr
    logs = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert "DEBUG" in {entry["level"] for entry in logs}  # -v: JSON log lines, on stderr
    resynced = json.loads(as_json.stdout)["pass"]
    as_table = deploy.syncd("resync", "--user", user)
    assert as_table.returncode == 0, as_table.stderr
    counts = (
        resynced["done"],
        resynced["failed"],
        resynced["held"],
        resynced["blocked_deprovisions"],
    )
    assert _summary_counts(as_table.stdout.strip()) == counts == (1, 0, 0, 0)
