"""The run lock: at most one syncd process acts on a state store at a time.

PostgreSQL: a session advisory lock held on a dedicated connection for the lock's lifetime.
SQLite: an exclusive ``flock`` on a lock file (by default the database file plus ``.lock``)
that names its holder. Either way the lock dies with its holder, however the holder dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from syncd.errors import ConfigError, LockHeldError, SyncdError, UnavailableError
from syncd.state.db import (
    advisory_lock_key,
    display_url,
    driver_message,
    parse_url,
    sqlite_path,
)

RUN_LOCK_KEY = advisory_lock_key("syncd-run")
_POLL_SECONDS = 0.2
_HOLDER_RE = re.compile(r"pid=(\d+) host=(\S*)")


def _this_holder() -> str:
    return f"pid={os.getpid()} host={socket.gethostname()}"


def _describe_holder(raw: str) -> str:
    match = _HOLDER_RE.search(raw)
    if match is None:
        return "holder unknown"
    return f"pid {match.group(1)} on host {match.group(2) or 'unknown'}"


def _unwritable(path: Path, error: OSError) -> SyncdError:
    problem = f"cannot write the run-lock file {path}: {error.strerror}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return UnavailableError(f"state.lock_file: {problem}; free space on its file system")
    return ConfigError("state.lock_file", problem)


class _Backend(Protocol):
    where: str

    def try_acquire(self) -> bool: ...

    def holder(self) -> str: ...

    def is_held(self) -> bool: ...

    def release(self) -> None: ...


class _FileLock:
    """An exclusive flock on a file whose content names the holder."""

    def __init__(self, url: URL, lock_file: Path | None) -> None:
        self._temporary = False
        if lock_file is None:
            database = sqlite_path(url)
            if database is None:
                # An in-memory database lives in one process only: a private lock file suffices.
                name = f"syncd-memory-{os.getpid()}-{uuid.uuid4().hex}.lock"
                lock_file = Path(tempfile.gettempdir()) / name
                self._temporary = True
            else:
                lock_file = Path(f"{database}.lock")
        self.path = lock_file
        self.where = f"{display_url(url)} (lock file {lock_file})"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise ConfigError(
                "state.lock_file", f"cannot open the run-lock file {self.path}: {error.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{_this_holder()}\n".encode())
        except OSError as error:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise _unwritable(self.path, error) from None
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return _describe_holder(self.path.read_text(errors="replace"))
        except OSError:
            return "holder unknown"

    def is_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._temporary:
            self.path.unlink(missing_ok=True)


class _AdvisoryLock:
    """A PostgreSQL session advisory lock on a connection of its own."""

    def __init__(self, url: URL) -> None:
        self._url = url
        self.where = display_url(url)
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._held = False

    def _connect(self) -> Connection:
        if self._connection is None:
            # The application name tells a contender who holds the lock (at most 63 bytes).
            self._engine = create_engine(
                self._url,
                poolclass=NullPool,
                isolation_level="AUTOCOMMIT",
                connect_args={"application_name": f"syncd-run {_this_holder()}"[:63]},
            )
            self._connection = self._engine.connect()
        return self._connection

    def try_acquire(self) -> bool:
        statement = text("SELECT pg_try_advisory_lock(:key)")
        self._held = bool(self._connect().execute(statement, {"key": RUN_LOCK_KEY}).scalar_one())
        return self._held

    def holder(self) -> str:
        unsigned = RUN_LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
        row = (
            self._connect()
            .execute(
                text(
                    "SELECT a.application_name, a.pid FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) "
                    "AND l.classid::bigint = :high AND l.objid::bigint = :low"
                ),
                {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF},
            )
            .first()
        )
        if row is None:
            return "holder unknown"
        name, backend_pid = str(row[0] or ""), row[1]
        if _HOLDER_RE.search(name):
            return _describe_holder(name)
        return f"PostgreSQL backend pid {backend_pid}, application {name!r}"

    def is_held(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except DBAPIError:
            return False
        return True

    def release(self) -> None:
        try:
            if self._held and self._connection is not None:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": RUN_LOCK_KEY}
                )
        except DBAPIError:
            pass  # the connection is gone, and the server released the lock with it
        finally:
            self._held = False
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


class RunLock:
    """The run lock for the state store at ``url``; use as a context manager or acquire()."""

    def __init__(
        self,
        url: str,
        lock_file: str | os.PathLike[str] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        parsed = parse_url(url)
        self.wait = wait
        self.timeout = timeout
        self._backend: _Backend
        if parsed.get_backend_name() == "postgresql":
            self._backend = _AdvisoryLock(parsed)
        else:
            self._backend = _FileLock(parsed, Path(lock_file) if lock_file is not None else None)

    @property
    def where(self) -> str:
        """The store (and lock file) the lock guards, password masked."""
        return self._backend.where

    def is_held(self) -> bool:
        """True while this process holds the lock (checks the PostgreSQL session is alive)."""
        return self._backend.is_held()

    def acquire(self) -> RunLock:
        """Take the lock, waiting for it when ``wait``; raise LockHeldError if it stays taken."""
        if self._backend.is_held():
            return self
        started = time.monotonic()
        try:
            while not self._backend.try_acquire():
                waited = time.monotonic() - started
                if not self.wait or (self.timeout is not None and waited >= self.timeout):
                    raise LockHeldError(self._held_message(waited))
                time.sleep(_POLL_SECONDS)
        except DBAPIError as error:
            self._backend.release()
            raise SyncdError(
                f"cannot take the run lock on the state store at {self.where}: "
                f"{driver_message(error)}"
            ) from None
        except BaseException:
            self._backend.release()
            raise
        return self

    def _held_message(self, waited: float) -> str:
        after = f" (waited {waited:.0f} s)" if self.wait else ""
        return (
            f"another syncd process ({self._backend.holder()}) holds the run lock on "
            f"{self.where}{after}: wait for it to finish or stop it"
        )

    def release(self) -> None:
        """Give the lock back; harmless when not held."""
        self._backend.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def acquire(
    url: str,
    lock_file: str | os.PathLike[str] | None = None,
    wait: bool = False,
    timeout: float | None = None,
) -> RunLock:
    """Take the run lock for ``url`` now (see RunLock) and return it, held."""
    return RunLock(url, lock_file, wait=wait, timeout=timeout).acquire()
