"""A throwaway PostgreSQL server for benchmarks: initdb and pg_ctl in a temporary directory.

``with postgres_server() as server:`` starts a server on a free 127.0.0.1 port with trust
authentication for ``postgres`` (fsync off: a benchmark's data is thrown away), and stops it
(``pg_ctl stop -m immediate``) and removes its directory on the way out, whatever happened.
As root (initdb refuses root) the binaries run as the ``postgres`` system user through
``runuser``. The binaries are found as tests/conftest.py finds them (pg_config, then
/usr/lib/postgresql/*/bin, newest first, then initdb on PATH); this module does not import
pytest, so the benchmarks run without the test fixtures.

``server.create_database()`` makes a new empty database and returns its URL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

INSTALL_HINT = "install PostgreSQL's server (make system-deps, or apt-get install postgresql)"


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start."""


def postgres_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    installed = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [
        Path(p) for p in sorted(installed, key=lambda p: int(p.split("/")[-2]), reverse=True)
    ]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Binaries:
    """Runs the server binaries, as the ``postgres`` user when we are root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.as_user = pwd.getpwnam("postgres")
            except KeyError as error:
                raise PostgresUnavailable(
                    f"as root, PostgreSQL needs a 'postgres' system user; {INSTALL_HINT}"
                ) from error
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("as root, PostgreSQL needs runuser (util-linux)")

    def give(self, path: Path) -> None:
        if self.as_user is not None:
            os.chown(path, self.as_user.pw_uid, self.as_user.pw_gid)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@dataclass(frozen=True)
class PostgresServer:
    """A running server; trust authentication for ``user`` on ``host``."""

    port: int
    user: str = "postgres"
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "syncd_bench") -> str:
        """A new empty database with a unique name; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A server on a free 127.0.0.1 port, stopped and removed on the way out."""
    bindir = postgres_bindir()
    if bindir is None:
        raise PostgresUnavailable(f"PostgreSQL server binaries not found; {INSTALL_HINT}")
    binaries = _Binaries(bindir)
    base = Path(tempfile.mkdtemp(prefix="syncd-bench-pg-"))
    try:
        data, sockets, log = base / "data", base / "sockets", base / "server.log"
        sockets.mkdir()
        for path in (base, sockets):
            binaries.give(path)
        initdb = binaries.run(
            *("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            *("--locale=C", "--no-sync"),
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {(initdb.stderr or initdb.stdout).strip()}")
        failure = ""
        for _attempt in range(3):  # a free port can be taken before the server binds it
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} "
                f"-c unix_socket_directories={sockets} -c max_connections=200 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = binaries.run(
                *("pg_ctl", "-D", str(data), "-l", str(log), "-o", options),
                *("-w", "-t", "60", "start"),
            )
            if started.returncode == 0:
                break
            failure = log.read_text(errors="replace")[-2000:] if log.exists() else started.stderr
        else:
            raise PostgresUnavailable(f"PostgreSQL did not start: {failure.strip()}")
        try:
            yield PostgresServer(port=port)
        finally:
            binaries.run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
