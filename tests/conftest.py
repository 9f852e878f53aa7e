"""Fixtures shared by every test: a throwaway PostgreSQL server and fresh state stores.

``db_url`` (an empty database) and ``migrated_db_url`` (upgraded to head) run each test that
takes them twice, on SQLite and on PostgreSQL. The PostgreSQL server is real, started once
per session from the installed binaries, and missing binaries fail the tests, never skip them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from syncd.state.db import create_engine_for, upgrade

# Hooks: with CI set, a skip is a failure (tests/noskip.py).
from .noskip import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

# pytest-timeout: 180 s per test by default (pyproject.toml). Tests that only talk to the
# in-process Google sandbox take seconds (under 3 s on a loaded 2-core machine), so a hung
# sandbox server fails them sooner; a test's own @pytest.mark.timeout wins.
SHORT_TIMEOUTS = {"sandbox": 60, "google": 60}

INSTALL_HINT = "install them with: apt-get install -y postgresql"


def _postgres_bindir() -> Path | None:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    installed = glob.glob("/usr/lib/postgresql/*/bin")
    newest_first = sorted(installed, key=lambda p: int(p.split("/")[-2]), reverse=True)
    candidates += [Path(p) for p in newest_first]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def admin_connection(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the database at ``url``, for what a test does behind
    syncd's back (ending its sessions, changing server settings)."""
    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        dbname=parsed.database,
        autocommit=True,
    )


@dataclass
class PostgresServer:
    """A running throwaway server; trust authentication for ``user`` on 127.0.0.1."""

    port: int
    user: str = "postgres"
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        )

    def create_database(self, template: str | None = None) -> str:
        """A new database with a unique name, empty or a copy of ``template``."""
        name = f"syncd_test_{uuid.uuid4().hex[:16]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._admin() as admin:
            admin.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class _Runner:
    """Runs the server binaries, as the ``postgres`` user when we are root (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.as_user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs a 'postgres' system user to run PostgreSQL; "
                            + INSTALL_HINT)
            if shutil.which("runuser") is None:
                pytest.fail("running as root needs runuser (package util-linux) to run PostgreSQL")

    def give(self, path: Path) -> None:
        if self.as_user is not None:
            os.chown(path, self.as_user.pw_uid, self.as_user.pw_gid)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free 127.0.0.1 port for the whole test session."""
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.fail(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")
    runner = _Runner(bindir)
    base = Path(tempfile.mkdtemp(prefix="syncd-test-pg-"))
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    sockets.mkdir()
    for path in (base, sockets):
        runner.give(path)
    initdb = runner.run(
        "initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
        "--locale=C", "--no-sync",
    )
    if initdb.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
    server: PostgresServer | None = None
    failure = ""
    for _attempt in range(3):
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = runner.run(
            "pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"
        )
        if started.returncode == 0:
            server = PostgresServer(port=port)
            break
        failure = log.read_text(errors="replace")[-2000:] if log.exists() else started.stderr
    if server is None:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {failure.strip()}")
    try:
        yield server
    finally:
        runner.run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(base, ignore_errors=True)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def _postgres_migrated_template(postgres_server: PostgresServer) -> str:
    """A database upgraded to head once per session, copied for each ``migrated_db_url``."""
    name = postgres_server.create_database()
    _migrate(postgres_server.url(name))
    return name


@pytest.fixture(scope="session")
def _sqlite_migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store upgraded to head once per session, copied for each ``migrated_db_url``
    (as PostgreSQL's template database: running every migration again for each test cost a
    few tenths of a second each; the migrations themselves are tested in tests/state)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "state.db"
    _migrate(f"sqlite:///{path}")
    return path


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's backup API (whatever is still in a WAL file too)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as original,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        original.backup(copy)


def _migrate(url: str) -> None:
    engine = create_engine_for(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def _fresh_store(request: pytest.FixtureRequest, tmp_path: Path, migrated: bool) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        if migrated:
            template: Path = request.getfixturevalue("_sqlite_migrated_template")
            _copy_sqlite(template, tmp_path / "state.db")
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("_postgres_migrated_template") if migrated else None
    name = server.create_database(template=template)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty state store: a SQLite file, or a new PostgreSQL database."""
    yield from _fresh_store(request, tmp_path, migrated=False)


@pytest.fixture(params=BACKENDS)
def migrated_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Like ``db_url`` (a store of its own), with the schema upgraded to the head revision."""
    yield from _fresh_store(request, tmp_path, migrated=True)


@pytest.fixture
def postgres_db_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (for PostgreSQL-only tests)."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Tests that run ``syncd.cli.main`` in-process install syncd's log handler on a stream
    pytest closes afterwards; put the root logger back so later log records go nowhere bad."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass(frozen=True)
class KaclsView:
    """kaclsData as a KACLS sees it, read with AES-GCM and the ``openssl`` command only."""

    der: bytes
    """The unwrapped private key, as DER."""
    traditional_pem: str
    """``openssl rsa -inform DER -traditional``: BEGIN RSA PRIVATE KEY for an RSA key."""
    is_pkcs1: bool
    """The DER is an RSAPrivateKey (version, modulus, ...), not a PKCS#8 PrivateKeyInfo."""
    public_pem: str
    """``openssl pkey -pubout`` of the key."""


def _openssl_text(args: list[str], stdin: bytes) -> str:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout.decode()


def kacls_view(kacls_data: str, wrapping_key: bytes) -> KaclsView:
    """Unwrap kaclsData as Cosmian's KACLS does (standard base64 of nonce 12 || ciphertext ||
    tag 16, AES-256-GCM, no associated data) and parse it with openssl, not with syncd."""
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sealed = base64.b64decode(kacls_data, validate=True)
    der = AESGCM(wrapping_key).decrypt(sealed[:12], sealed[12:], None)
    structure = _openssl_text(["asn1parse", "-inform", "DER"], der).splitlines()
    # PKCS#1: SEQUENCE { INTEGER 0, INTEGER modulus, ... }; PKCS#8: SEQUENCE { INTEGER 0,
    # SEQUENCE { rsaEncryption ... }, OCTET STRING }.
    is_pkcs1 = "INTEGER" in structure[2] and not any("rsaEncryption" in s for s in structure)
    return KaclsView(
        der=der,
        traditional_pem=_openssl_text(["rsa", "-inform", "DER", "-traditional"], der),
        is_pkcs1=is_pkcs1,
        public_pem=_openssl_text(["pkey", "-inform", "DER", "-pubout"], der),
    )


LONGEST_FILES = (
    "pipeline/test_crash_safety.py",
    "pipeline/test_crash_safety_kmip.py",
    "daemon/test_stop.py",
    "daemon/test_run.py",
    "demo/test_wheel.py",
    "bench/test_scale_smoke.py",
    "pipeline/test_lock_lost.py",
    "pipeline/test_shared.py",
    "pipeline/test_retire.py",
    "google_commands/test_keypairs_identities.py",
    "pipeline/test_sync.py",
    "kmip/test_backend_switch.py",
    "pipeline/test_adopt.py",
    "daemon/test_metrics.py",
)
"""Test files that take longest (``--durations`` of a whole run), longest first. They are
collected first: with ``--dist loadfile --no-loadscope-reorder`` (the Makefile) pytest-xdist hands
out whole files in collection order as workers come free, so the long ones start at once and the
many short files fill the gaps, instead of one long file running alone on one worker at the end
while the other worker sits idle. (xdist's default reorder, by number of tests, puts these
files, which have few but long tests, last.) Only the order of files changes, never the order of
tests within a file."""


def _file_rank(item: pytest.Item, tests: Path) -> int:
    if item.path.is_relative_to(tests):
        name = item.path.relative_to(tests).as_posix()
        if name in LONGEST_FILES:
            return LONGEST_FILES.index(name)
    return len(LONGEST_FILES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        if not item.path.is_relative_to(tests):
            continue
        folder = item.path.relative_to(tests).parts[0]
        if folder in SHORT_TIMEOUTS and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SHORT_TIMEOUTS[folder]))
    items.sort(key=lambda item: _file_rank(item, tests))  # stable: files keep their own order
