"""The state store's connections: engines, sessions, schema upgrades and the schema check.

SQLite (the default) and PostgreSQL through psycopg 3 are supported. The schema is owned by
the Alembic migrations shipped as ``syncd.migrations``; syncd refuses to work on a store whose
schema is not exactly the one its migrations produce (``require_current_schema``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool

from syncd.errors import (
    ConfigError,
    SchemaOutdatedError,
    StateStoreError,
    SyncdError,
    UnavailableError,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.orm import Session, sessionmaker

# Alembic (half a second to import) is loaded only to change the schema or to explain a store
# that is not at the head revision: the everyday check reads alembic_version with plain SQL.
HEAD_REVISION = "0011_instance_pid_namespace"
"""The revision this syncd's migrations end at (tests/state/test_db.py keeps it equal to
Alembic's head: a new migration must update it)."""
VERSION_TABLE = "alembic_version"

SQLITE_BUSY_TIMEOUT_MS = 30_000
_URL_WHERE = "state.url"


def advisory_lock_key(name: str) -> int:
    """A fixed signed 64-bit PostgreSQL advisory lock key derived from ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


# Serialises concurrent upgrades on PostgreSQL; distinct from the run lock's key.
_PG_MIGRATION_LOCK_KEY = advisory_lock_key("syncd-migrate")


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL for ``url``, with ``postgresql://`` mapped to the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        # The text may hold a password: never echo it.
        raise ConfigError(
            _URL_WHERE,
            "cannot parse the database URL (is the port a number?); expected "
            "sqlite:///path.db or postgresql://user@host[:port]/dbname",
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgresql":
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise ConfigError(_URL_WHERE, f"port {parsed.port} is not a TCP port (1-65535)")
        if driver not in ("", "psycopg"):
            raise ConfigError(
                _URL_WHERE,
                f"the PostgreSQL driver {driver!r} is not supported; use postgresql+psycopg://",
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigError(
                _URL_WHERE, f"the SQLite driver {driver!r} is not supported; use sqlite:///"
            )
        return parsed
    raise ConfigError(
        _URL_WHERE, f"the {backend!r} database is not supported; use sqlite or postgresql"
    )


def display_url(url: str | URL) -> str:
    """``url`` with any password masked, for messages and logs."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    parsed = url if isinstance(url, URL) else make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def create_engine_for(url: str) -> Engine:
    """An engine for ``url`` (SQLite: foreign keys on, WAL, busy timeout; PostgreSQL: psycopg 3).

    Its errors never quote a statement's parameters: they hold sealed keys, certificates and
    audit details, and an error ends up in logs and in the tasks table."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        _require_psycopg()
        return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    path = sqlite_path(parsed)
    if path is None:
        # One shared connection, or every pooled connection would see its own empty database.
        engine = create_engine(
            parsed,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            hide_parameters=True,
        )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                _URL_WHERE, f"cannot create the folder {path.parent} for the database: {error}"
            ) from None
        engine = create_engine(parsed, hide_parameters=True)
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _require_psycopg() -> None:
    """PostgreSQL support is an extra (``syncd[postgres]``): name it, not an ImportError."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError(
            _URL_WHERE,
            "a PostgreSQL database needs the psycopg driver, which is not installed: "
            "pip install 'syncd[postgres]'",
        ) from None


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL survives any crash of syncd itself; a power cut may lose the
        # last commits, which idempotent steps redo (they find their artifacts).
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine`` whose objects stay readable after commit."""
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(bind=engine, expire_on_commit=False)


def migrations_dir() -> Path:
    """The folder of the Alembic environment shipped as ``syncd.migrations``."""
    return Path(str(importlib.resources.files("syncd.migrations")))


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(migrations_dir()))


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def _current_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The revision this syncd's migrations end at."""
    head = _script().get_current_head()
    if head is None:
        raise SchemaOutdatedError("syncd.migrations holds no revision: the installation is broken")
    return head


def all_revisions() -> list[str]:
    """Every revision this syncd ships, oldest first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """``(current, head)``: the store's revision (None when it has none) and this syncd's."""
    try:
        with engine.connect() as connection:
            current = _current_revision(connection)
    except DBAPIError as error:
        raise database_error(error, engine.url) from None
    return current, head_revision()


def driver_message(error: DBAPIError) -> str:
    """The database driver's own message for ``error``, on one line."""
    return " ".join(str(error.orig or error).split()) or type(error).__name__


# PostgreSQL SQLSTATEs of a server that is there but cannot serve now: class 08 (connection
# exception), 53 (insufficient resources: disk full, out of memory, too many connections),
# 57014 (statement timeout), 57P01-57P03 and 57P05 (shut down, starting up, idle session
# timeout), 55P03 (lock timeout), 58 (system error: I/O).
_PG_UNAVAILABLE = ("08", "53", "57014", "57P01", "57P02", "57P03", "57P05", "55P03", "58")
_SQLITE_UNAVAILABLE = ("database or disk is full", "database is locked", "disk i/o error")
_SQLITE_NOT_A_DATABASE = ("file is not a database", "database disk image is malformed")


def session_lost(error: DBAPIError) -> bool:
    """True when ``error`` ended the connection it ran on (the server restarted, failed over or
    ended the session): what was in flight rolled back, and a new connection may well work.
    Not a full disk or a database that refuses connections: those fail again at once."""
    return bool(error.connection_invalidated)


def is_unavailable(error: DBAPIError) -> bool:
    """True when ``error`` means the database cannot be reached or cannot serve for now
    (down, refusing connections, timing out, starting up, disk full), not that it is wrong."""
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if type(original).__module__.startswith("psycopg"):
        if sqlstate is None:
            # Raised before any server answered (refused, timed out, host not found) or on a
            # connection already lost.
            return type(original).__name__ in ("OperationalError", "InterfaceError")
        return str(sqlstate).startswith(_PG_UNAVAILABLE)
    message = str(original).lower()
    return any(text in message for text in _SQLITE_UNAVAILABLE)


def _no_space_left(path: Path) -> bool:
    """True when the file system holding ``path`` has no free block left for syncd.

    SQLite reports a full disk as "disk I/O error" when it cannot even create its -shm file."""
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def database_error(error: DBAPIError, url: str | URL) -> SyncdError:
    """The one-line error for a database driver failure on the store at ``url``.

    UnavailableError (exit 4) when the database is down, unreachable or out of space, so a
    service manager tries again later; ConfigError naming state.url when the setting points
    at something that is not a usable syncd database (exit 2); StateStoreError for anything
    else the database refused (exit 1).
    """
    where = display_url(url)
    message = driver_message(error)
    path = sqlite_path(url) if make_url(str(url)).get_backend_name() == "sqlite" else None
    if path is not None:
        where = str(path)
    lowered = message.lower()
    if is_unavailable(error):
        if "full" in lowered or (path is not None and _no_space_left(path)):
            return UnavailableError(
                f"{_URL_WHERE}: {where}: {message}: no space left for the state store; "
                "free space on its file system (the failed transaction was rolled back)"
            )
        return UnavailableError(f"{_URL_WHERE}: the database {where} is unavailable: {message}")
    if any(text in lowered for text in _SQLITE_NOT_A_DATABASE):
        return ConfigError(_URL_WHERE, f"{where} is not a SQLite database ({message})")
    if "unable to open database file" in lowered or "readonly database" in lowered:
        return ConfigError(
            _URL_WHERE, f"cannot open or write {where} ({message}): check the folder's permissions"
        )
    return StateStoreError(f"the state store {where} refused an operation: {message}")


def stored_revisions(connection: Connection) -> list[str] | None:
    """The revisions recorded in the store's version table (one when it is sound), or None
    when the store has no version table; plain SQL, as Alembic reads it."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return [str(row[0]) for row in rows]


def at_head(engine: Engine) -> bool:
    """True when the store is exactly at :data:`HEAD_REVISION`, without loading Alembic."""
    try:
        with engine.connect() as connection:
            return stored_revisions(connection) == [HEAD_REVISION]
    except DBAPIError as error:
        raise database_error(error, engine.url) from None


def require_current_schema(engine: Engine) -> None:
    """Raise SchemaOutdatedError unless the store is exactly at this syncd's head revision."""
    if at_head(engine):
        return
    # Not at head (or HEAD_REVISION out of date): Alembic tells what the store is at.
    current, head = schema_status(engine)
    if current == head:
        return
    _refuse_unknown_revision(engine)
    where = display_url(engine.url)
    shown = current if current is not None else "none (empty database)"
    raise SchemaOutdatedError(
        f"the state store at {where} is at revision {shown}, this syncd needs {head}: "
        "run `syncd db upgrade`"
    )


def _refuse_unknown_revision(engine: Engine) -> None:
    """SchemaOutdatedError when the store is at a revision this syncd does not ship."""
    current, head = schema_status(engine)
    known = {script.revision for script in _script().walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutdatedError(
            f"the state store at {display_url(engine.url)} is at revision {current}, which "
            f"this syncd does not know (a newer syncd upgraded it); this syncd needs {head}: "
            "upgrade syncd; nothing was changed"
        )


def upgrade(engine: Engine) -> list[str]:
    """Apply every pending migration in one transaction; return the revisions applied, in order."""
    from alembic import command
    from alembic.util import CommandError

    _refuse_unknown_revision(engine)
    script = _script()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # Table rebuilds (batch migrations) need foreign keys off; SQLite ignores this
            # pragma inside a transaction, so it comes first.
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
            connection.commit()
        try:
            if sqlite:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
                )
            before = _current_revision(connection)
            try:
                command.upgrade(_alembic_config(connection), "head")
            except CommandError as error:
                raise SchemaOutdatedError(
                    f"cannot upgrade the state store at {display_url(engine.url)}: {error}; "
                    "nothing was changed"
                ) from None
            after = _current_revision(connection)
            if sqlite:
                _check_foreign_keys(connection)
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys = ON")
                connection.commit()
    if after is None or after == before:
        return []
    applied = script.iterate_revisions(after, before if before is not None else "base")
    return [revision.revision for revision in reversed(list(applied))]


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise SchemaOutdatedError(
            f"the migration left rows with dangling foreign keys in {', '.join(tables)}; "
            "nothing was changed: report this to the syncd maintainers"
        )


@dataclass(frozen=True)
class Database:
    """An open state store: its URL, engine and (made on first use, as it loads the ORM)
    session factory."""

    url: str
    engine: Engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @classmethod
    def open(cls, url: str, *, require_current: bool = True) -> Database:
        """Connect to ``url``; with ``require_current``, refuse a store not at the head revision."""
        engine = create_engine_for(url)
        if require_current:
            try:
                require_current_schema(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(url=url, engine=engine)

    @property
    def display_url(self) -> str:
        return display_url(self.engine.url)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends, rolled back if it raises."""
        with self.sessions() as session, session.begin():
            yield session

    def upgrade(self) -> list[str]:
        return upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()
