"""``App.close()`` (and leaving ``with App(...)``) releases what the App opened: the state
store's connections, counted by the database itself (PostgreSQL's pg_stat_activity) or by the
operating system (SQLite: this process's open descriptors on the database file)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from syncd.app.context import App

from .conftest import Deployment


def open_connections(url: str) -> int:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        database = Path(parsed.database).resolve()
        fds = Path("/proc/self/fd")
        count = 0
        for fd in fds.iterdir():
            try:
                count += Path(os.readlink(fd)) == database
            except OSError:  # closed since listed
                continue
        return count
    checker = create_engine(parsed, poolclass=NullPool)
    try:
        with checker.connect() as connection:
            return int(
                connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                or 0
            )
    finally:
        checker.dispose()


def test_leaving_the_app_closes_its_database_connections(deployment: Deployment) -> None:
    url = deployment.config.state.url
    before = open_connections(url)
    with App(deployment.config) as app:
        app.check_kms()  # the database, the keyring and the issuer's key
        assert open_connections(url) > before
    assert open_connections(url) == before
    app.check_kms()  # a closed App reopens what it needs
    assert open_connections(url) > before
    app.close()
    app.close()  # closing twice is harmless
    assert open_connections(url) == before
