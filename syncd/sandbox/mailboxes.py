"""The sandbox's Gmail state: each user's key pairs and identities, one JSON document per user
in ``state/mailboxes.db`` (SQLite), changed under a per-user lock.

SQLite rather than a file per user because a commit appends to the write-ahead log, where
replacing a file creates and renames an inode: several times the work of the rest of a request.
Commits are not synced (``synchronous=NORMAL`` under WAL): a sandbox that dies keeps every
committed change; a power cut may lose the last ones, which a test double can afford.
A data folder of the earlier layout (``state/users/<email>.json``) is imported on first use.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EMPTY = '{"keypairs": [], "identities": []}'
BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA = "CREATE TABLE IF NOT EXISTS mailboxes (email TEXT PRIMARY KEY, state TEXT NOT NULL)"
_READ = "SELECT state FROM mailboxes WHERE email = ?"
_WRITE = (
    "INSERT INTO mailboxes (email, state) VALUES (?, ?) "
    "ON CONFLICT (email) DO UPDATE SET state = excluded.state"
)
_DELETE = "DELETE FROM mailboxes WHERE email = ?"


class Mailboxes:
    """Users' Gmail state in ``path``; one SQLite connection per thread."""

    def __init__(self, path: Path, legacy_folder: Path | None = None) -> None:
        self.path = path
        self._legacy_folder = legacy_folder
        self._local = threading.local()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._prepared = False

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self._prepare()
            # Autocommit: each write below is its own transaction.
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            connection.execute("PRAGMA synchronous = NORMAL")
            self._local.connection = connection
        return connection

    def _prepare(self) -> None:
        with self._guard:
            if self._prepared:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as setup:
                setup.execute("PRAGMA journal_mode = WAL")
                setup.execute(_SCHEMA)
                self._import_legacy(setup)
            self._prepared = True

    def _import_legacy(self, connection: sqlite3.Connection) -> None:
        folder = self._legacy_folder
        if folder is None or not folder.is_dir():
            return
        rows = [
            (urllib.parse.unquote(file.stem).lower(), file.read_text(encoding="utf-8"))
            for file in sorted(folder.glob("*.json"))
        ]
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT OR IGNORE INTO mailboxes (email, state) VALUES (?, ?)", rows
            )
        folder.rename(folder.with_name(folder.name + ".imported"))

    def _lock(self, email: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(email, threading.Lock())

    @contextlib.contextmanager
    def state(self, email: str) -> Iterator[dict[str, Any]]:
        """One user's state, locked for the block and saved if the block changed it."""
        key = email.lower()
        with self._lock(key):
            connection = self._connection()
            row = connection.execute(_READ, (key,)).fetchone()
            before: str = row[0] if row is not None else EMPTY
            state: dict[str, Any] = json.loads(before)
            yield state
            if state != json.loads(before):
                connection.execute(_WRITE, (key, json.dumps(state)))

    def move(self, old: str, new: str) -> None:
        """A renamed user's mailbox: the state of ``old`` now under ``new`` (whatever ``new``
        held before, a mailbox of a deleted user, is gone)."""
        if old.lower() == new.lower():
            return
        first, second = sorted((old.lower(), new.lower()))
        with self._lock(first), self._lock(second):
            connection = self._connection()
            row = connection.execute(_READ, (old.lower(),)).fetchone()
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(_DELETE, (new.lower(),))
                if row is not None:
                    connection.execute(_WRITE, (new.lower(), row[0]))
                    connection.execute(_DELETE, (old.lower(),))

    def drop(self, email: str) -> None:
        """A deleted user's mailbox: gone with its key pairs and identities."""
        key = email.lower()
        with self._lock(key):
            self._connection().execute(_DELETE, (key,))
