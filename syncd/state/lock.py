"""The run lock: at most one syncd process acts on a state store at a time.

PostgreSQL: a session advisory lock held on a dedicated connection for the lock's lifetime.
SQLite: an exclusive ``flock`` on a lock file (by default the database file plus ``.lock``)
that names its holder. Either way the lock dies with its holder, however the holder dies.

A held lock can still be lost under a running process: its lock file removed or replaced, its
PostgreSQL session ended (``pg_terminate_backend``, a restart, a network cut). ``lost_reason``
says so (the lock file's inode is compared with the path's; a heartbeat thread runs
``SELECT 1`` on the lock's session, which is also exempted from ``idle_session_timeout``).
Detecting it here only stops a pass early: the fencing token (syncd.state.fencing) is what
keeps a pass that lost the lock from recording anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
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
HEARTBEAT_SECONDS = 5.0
"""How often the PostgreSQL lock's session is checked (and kept busy)."""
# TCP keepalives on the lock's connection: a silent network cut is noticed in about a minute.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
_HOLDER_RE = re.compile(r"pid=(\d+) host=(\S*)")


def pid_namespace() -> str | None:
    """This process's kernel and PID namespace (``<boot id>:<namespace inode>``): processes
    that share it see each other's pids, whatever their hostnames (containers and cloned
    machines share those). None where Linux's /proc does not tell."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot_id}:{namespace}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (True when that cannot be told)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_holder() -> str:
    """How this process names itself as a holder: ``pid=<pid> host=<host>``."""
    return f"pid={os.getpid()} host={socket.gethostname()}"


def describe_holder(raw: str) -> str:
    """``pid X on host Y`` for a holder named by this_holder (or "holder unknown")."""
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

    def lost_reason(self) -> str | None: ...

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
        self._inode: tuple[int, int] | None = None

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
            os.write(fd, f"{this_holder()}\n".encode())
        except OSError as error:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise _unwritable(self.path, error) from None
        self._fd = fd
        held = os.fstat(fd)
        self._inode = (held.st_dev, held.st_ino)
        return True

    def holder(self) -> str:
        try:
            return describe_holder(self.path.read_text(errors="replace"))
        except OSError:
            return "holder unknown"

    def is_held(self) -> bool:
        return self._fd is not None and self.lost_reason() is None

    def lost_reason(self) -> str | None:
        if self._fd is None:
            return None
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return f"its lock file {self.path} was removed"
        except OSError as error:
            return f"its lock file {self.path} cannot be read: {error.strerror}"
        if (current.st_dev, current.st_ino) != self._inode:
            return f"its lock file {self.path} was replaced"
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            self._inode = None
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
        self._lost: str | None = None
        self._mutex = threading.Lock()
        """Serialises the heartbeat thread's use of the connection with the owner's."""
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _connect(self) -> Connection:
        if self._connection is None:
            # The application name tells a contender who holds the lock (at most 63 bytes).
            self._engine = create_engine(
                self._url,
                poolclass=NullPool,
                isolation_level="AUTOCOMMIT",
                connect_args={
                    "application_name": f"syncd-run {this_holder()}"[:63],
                    **_KEEPALIVES,
                },
            )
            self._connection = self._engine.connect()
            exempt_from_idle_timeout(self._connection)
        return self._connection

    def try_acquire(self) -> bool:
        statement = text("SELECT pg_try_advisory_lock(:key)")
        with self._mutex:
            result = self._connect().execute(statement, {"key": RUN_LOCK_KEY}).scalar_one()
        self._held = bool(result)
        if self._held:
            self._lost = None
            self._stop_heartbeat.clear()
            self._heartbeat = threading.Thread(
                target=self._beat, name="syncd-run-lock-heartbeat", daemon=True
            )
            self._heartbeat.start()
        return self._held

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(HEARTBEAT_SECONDS):
            if not self._alive():
                return

    def _alive(self) -> bool:
        """Run SELECT 1 on the lock's session; False (and the reason kept) once it is gone."""
        with self._mutex:
            if self._lost is not None or self._connection is None:
                return False
            try:
                self._connection.execute(text("SELECT 1"))
            except DBAPIError as error:
                self._lost = f"the PostgreSQL session holding it ended: {driver_message(error)}"
                return False
            except SQLAlchemyError as error:  # the connection was invalidated meanwhile
                self._lost = f"the PostgreSQL session holding it ended: {error}"
                return False
        return True

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
            return describe_holder(name)
        return f"PostgreSQL backend pid {backend_pid}, application {name!r}"

    def is_held(self) -> bool:
        return self._held and self._alive()

    def lost_reason(self) -> str | None:
        return self._lost if self._held else None

    def release(self) -> None:
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=HEARTBEAT_SECONDS)
            self._heartbeat = None
        try:
            if self._held and self._lost is None and self._connection is not None:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": RUN_LOCK_KEY}
                )
        except SQLAlchemyError:
            pass  # the connection is gone, and the server released the lock with it
        finally:
            self._held = False
            if self._connection is not None:
                with contextlib.suppress(SQLAlchemyError):
                    self._connection.close()
                self._connection = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def exempt_from_idle_timeout(connection: Connection) -> None:
    """Turn ``idle_session_timeout`` (PostgreSQL 14+) off for this session only: the lock's
    session is idle by design, and the server ending it would end the lock."""
    version = connection.execute(text("SHOW server_version_num")).scalar_one()
    if int(version) >= 140000:
        connection.execute(text("SET idle_session_timeout = 0"))


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

    def lost_reason(self) -> str | None:
        """Why a lock this process acquired is no longer held, or None; cheap (no query)."""
        return self._backend.lost_reason()

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

    def holder(self) -> str:
        """``pid X on host Y`` of the process holding the lock (or "holder unknown")."""
        return self._backend.holder()

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


def hold_sqlite_instance(url: str, lock_file: str | os.PathLike[str] | None) -> RunLock | None:
    """For ``syncd run`` on SQLite: hold, for the process's lifetime, a lock that a second
    ``syncd run`` on the same store cannot take (LockHeldError naming the first and saying
    why). None on PostgreSQL, where instances share a store (``state.shared``) or take turns.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    base = Path(lock_file) if lock_file is not None else sqlite_path(parsed)
    if base is None:
        return None  # an in-memory store: no other process can see it
    lock = RunLock(url, Path(f"{base}.instance"))
    try:
        return lock.acquire()
    except LockHeldError:
        holder = lock.holder()
        raise LockHeldError(
            f"another syncd run ({holder}) already serves the SQLite state store "
            f"{display_url(parsed)}: a SQLite store serves one syncd instance; to run several, "
            "use PostgreSQL (state.url) with state.shared: true"
        ) from None
