"""The run lock across real processes, on SQLite (flock) and PostgreSQL (advisory lock)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from syncd.errors import EXIT_LOCKED, LockHeldError, SyncdError
from syncd.state.lock import RunLock, acquire
from tests.conftest import admin_connection

# argv: url, seconds to hold (negative: until killed). Prints "locked" once it holds the lock.
HOLDER = """
import sys, time
from syncd.state.lock import acquire
lock = acquire(sys.argv[1])
print("locked", flush=True)
seconds = float(sys.argv[2])
time.sleep(seconds if seconds >= 0 else 3600)
lock.release()
"""

# argv: url. Exits 0 if it got the lock, else prints the error and exits with its exit code.
CONTENDER = """
import sys
from syncd.errors import LockHeldError
from syncd.state.lock import acquire
try:
    acquire(sys.argv[1]).release()
except LockHeldError as error:
    print(error)
    sys.exit(error.exit_code)
"""


def _start_holder(url: str, seconds: float = -1) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if line.strip() != "locked":
        holder.kill()
        _, errors = holder.communicate(timeout=10)
        pytest.fail(f"the lock holder process did not start: {errors.strip()}")
    return holder


@pytest.fixture
def holder(db_url: str) -> Iterator[subprocess.Popen[str]]:
    process = _start_holder(db_url)
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def test_another_process_is_refused(db_url: str, holder: subprocess.Popen[str]) -> None:
    contender = subprocess.run(
        [sys.executable, "-c", CONTENDER, db_url], capture_output=True, text=True, timeout=60
    )
    assert contender.returncode == EXIT_LOCKED, contender.stderr
    expected = f"another syncd process (pid {holder.pid} on host {socket.gethostname()})"
    assert contender.stdout.startswith(expected)
    assert "holds the run lock on" in contender.stdout

    with pytest.raises(LockHeldError, match=rf"\(pid {holder.pid} on host "):
        acquire(db_url)


def test_lock_is_released_when_the_holder_is_killed(
    db_url: str, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockHeldError):
        acquire(db_url)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    # PostgreSQL ends the dead client's session as soon as it sees the socket close.
    lock = acquire(db_url, wait=True, timeout=10)
    try:
        assert lock.is_held()
    finally:
        lock.release()


def test_waiting_contender_gets_the_lock_after_release(db_url: str) -> None:
    process = _start_holder(db_url, seconds=1.0)
    try:
        started = time.monotonic()
        with RunLock(db_url, wait=True, timeout=30) as lock:
            assert lock.is_held()
            assert time.monotonic() - started > 0.3
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_waiting_gives_up_after_timeout(db_url: str, holder: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    with pytest.raises(LockHeldError, match=r"\(waited \d+ s\)"):
        acquire(db_url, wait=True, timeout=0.6)
    assert 0.5 < time.monotonic() - started < 10


def test_release_then_acquire_again_in_one_process(db_url: str) -> None:
    first = acquire(db_url)
    assert first.is_held()
    with pytest.raises(LockHeldError, match=f"pid {os.getpid()} "):
        acquire(db_url)
    first.release()
    assert not first.is_held()
    first.release()  # harmless twice
    with RunLock(db_url) as second:
        assert second.is_held()
    assert not second.is_held()


def test_sqlite_lock_file_names_its_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with RunLock(url):
        content = (tmp_path / "state.db.lock").read_text()
        assert content == f"pid={os.getpid()} host={socket.gethostname()}\n"
    custom = tmp_path / "locks" / "syncd.lock"
    with RunLock(url, lock_file=custom) as lock:
        assert custom.read_text().startswith(f"pid={os.getpid()} ")
        assert str(custom) in lock.where
        # A different lock file is a different lock.
        acquire(url).release()


def test_in_memory_sqlite_uses_a_private_temporary_lock_file() -> None:
    lock = acquire("sqlite://")
    try:
        path = Path(lock.where.split("lock file ", 1)[1].rstrip(")"))
        assert path.is_file()
    finally:
        lock.release()
    assert not path.exists()


def test_unreachable_postgresql_is_a_syncd_error() -> None:
    with pytest.raises(SyncdError, match=r"cannot take the run lock .*:\*\*\*@127\.0\.0\.1:1/"):
        acquire("postgresql://syncd:hunter2@127.0.0.1:1/state")


def test_sqlite_lock_file_removed_or_replaced_is_no_longer_held(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    path = tmp_path / "state.db.lock"
    lock = acquire(url)
    try:
        assert lock.is_held() and lock.lost_reason() is None
        path.unlink()
        assert not lock.is_held()
        assert lock.lost_reason() == f"its lock file {path} was removed"
        # What made it a lost lock: another process can take it now.
        other = acquire(url)
        assert not lock.is_held()
        assert lock.lost_reason() == f"its lock file {path} was replaced"
        other.release()
    finally:
        lock.release()
    assert lock.lost_reason() is None and not lock.is_held()


def _terminate_lock_session(url: str) -> None:
    with admin_connection(url) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"syncd-run pid={os.getpid()} %",),
        ).fetchall()
    assert ended == [(True,)]


@pytest.mark.postgres
def test_postgresql_lock_session_ended_is_seen_by_the_heartbeat(
    postgres_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.state import lock as lock_module

    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 0.05)
    lock = acquire(postgres_db_url)
    try:
        assert lock.lost_reason() is None
        _terminate_lock_session(postgres_db_url)
        deadline = time.monotonic() + 10
        while lock.lost_reason() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        reason = lock.lost_reason()
        assert reason is not None
        assert reason.startswith("the PostgreSQL session holding it ended: ")
        assert "administrator command" in reason
        assert not lock.is_held()
        acquire(postgres_db_url).release()  # the server released it with the session
    finally:
        lock.release()  # quietly, on the dead session


@pytest.mark.postgres
def test_postgresql_idle_session_timeout_does_not_end_the_lock(postgres_db_url: str) -> None:
    name = make_url(postgres_db_url).database
    with admin_connection(postgres_db_url) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET idle_session_timeout = '300ms'").format(
                sql.Identifier(str(name))
            )
        )
    lock = acquire(postgres_db_url)
    try:
        time.sleep(1.0)  # the lock's session is idle: the heartbeat runs every 5 s
        assert lock.is_held(), lock.lost_reason()
        with pytest.raises(LockHeldError):
            acquire(postgres_db_url)
    finally:
        lock.release()
