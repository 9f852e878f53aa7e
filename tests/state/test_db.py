"""Engines, sessions and the Database helper, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from syncd.errors import (
    ConfigError,
    SchemaOutdatedError,
    StateStoreError,
    UnavailableError,
)
from syncd.state.db import (
    HEAD_REVISION,
    Database,
    all_revisions,
    at_head,
    create_engine_for,
    database_error,
    migrations_dir,
    parse_url,
    session_factory,
    stored_revisions,
    upgrade,
)
from syncd.state.models import KeyPair, User


def _user(email: str = "alice@example.com") -> User:
    return User(email=email, directory_id=f"id-{email}", source="static")


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA foreign_keys").scalar_one() == 1
            assert pragma("PRAGMA journal_mode").scalar_one() == "wal"
            assert pragma("PRAGMA busy_timeout").scalar_one() == 30_000
        assert path.is_file()
    finally:
        engine.dispose()


def test_sqlite_in_memory_is_one_database(tmp_path: Path) -> None:
    engine = create_engine_for("sqlite://")
    try:
        assert upgrade(engine) == all_revisions()
        sessions = session_factory(engine)
        with sessions() as session:
            session.add(_user())
            session.commit()
        with sessions() as other:
            assert other.scalars(select(User.email)).all() == ["alice@example.com"]
    finally:
        engine.dispose()


def test_postgresql_url_uses_psycopg_3() -> None:
    assert parse_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    engine = create_engine_for("postgresql://u@127.0.0.1:1/db")
    assert engine.dialect.driver == "psycopg"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://u@h/db", "the 'mysql' database is not supported"),
        ("postgresql+psycopg2://u@h/db", "driver 'psycopg2' is not supported"),
        ("not a url at all", "cannot parse the database URL"),
    ],
)
def test_unsupported_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        create_engine_for(url)
    assert raised.value.where == "state.url"


def test_foreign_keys_are_enforced(migrated_db_url: str) -> None:
    database = Database.open(migrated_db_url)
    try:
        with pytest.raises(IntegrityError), database.transaction() as session:
            session.add(KeyPair(user_id=4242, generation=1, kms_label="x"))
    finally:
        database.close()


def test_transaction_commits_or_rolls_back(migrated_db_url: str) -> None:
    database = Database.open(migrated_db_url)
    try:
        with database.transaction() as session:
            session.add(_user("kept@example.com"))
        with pytest.raises(RuntimeError, match="boom"), database.transaction() as session:
            session.add(_user("dropped@example.com"))
            session.flush()
            raise RuntimeError("boom")
        with database.transaction() as session:
            emails = session.scalars(select(User.email)).all()
        assert emails == ["kept@example.com"]
    finally:
        database.close()


def test_objects_stay_readable_after_commit(migrated_db_url: str) -> None:
    database = Database.open(migrated_db_url)
    try:
        with database.transaction() as session:
            user = _user()
            session.add(user)
        # expire_on_commit=False: attributes load without a session after the commit.
        assert user.email == "alice@example.com"
        assert user.first_seen.tzinfo is not None
        with database.transaction() as session:
            first_seen = session.scalars(select(User.first_seen)).one()
        assert first_seen.utcoffset() is not None
        assert abs((first_seen - datetime.now(UTC)).total_seconds()) < 60
    finally:
        database.close()


def test_open_refuses_an_unmigrated_store(db_url: str) -> None:
    with pytest.raises(SchemaOutdatedError, match="run `syncd db upgrade`"):
        Database.open(db_url)
    database = Database.open(db_url, require_current=False)
    try:
        assert database.upgrade() == all_revisions()
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    finally:
        database.close()
    Database.open(db_url).close()


@pytest.mark.postgres
def test_messages_never_show_the_password(postgres_db_url: str) -> None:
    # Trust authentication ignores the password, so the URL still connects.
    url = postgres_db_url.replace("postgresql://postgres@", "postgresql://postgres:s3cr3t-pw@")
    with pytest.raises(SchemaOutdatedError) as raised:
        Database.open(url)
    assert "s3cr3t-pw" not in str(raised.value)
    assert "postgres:***@" in str(raised.value)


def test_unreachable_store_is_a_syncd_error(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError, match=r"^state\.url: the database postgresql\+psycopg://"
                       r"syncd:\*\*\*@127\.0\.0\.1:1/state is unavailable: .*refused"):
        Database.open("postgresql://syncd:hunter2@127.0.0.1:1/state")
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match=f"cannot create the folder {blocked}"):
        create_engine_for(f"sqlite:///{blocked}/state.db")


def test_other_database_refusals_are_a_failed_command(migrated_db_url: str) -> None:
    """Neither an outage (4) nor the configuration (2): a refused write fails the command (1)."""
    database = Database.open(migrated_db_url)
    try:
        with pytest.raises(IntegrityError) as raised, database.transaction() as session:
            session.add(KeyPair(user_id=4242, generation=1, kms_label="x"))
    finally:
        database.close()
    error = database_error(raised.value, migrated_db_url)
    assert isinstance(error, StateStoreError) and error.exit_code == 1
    assert str(error).startswith("the state store ") and "refused an operation" in str(error)


def test_head_revision_constant_is_alembics_head() -> None:
    """The schema check reads alembic_version against HEAD_REVISION without loading Alembic:
    the constant must be the head of the migrations shipped (a new migration updates it)."""
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(migrations_dir())).get_current_head() == HEAD_REVISION


def test_plain_sql_revision_read_agrees_with_alembic(db_url: str) -> None:
    """at_head() reads what Alembic's MigrationContext reads: no version table, an older
    revision, the head, an unknown revision."""
    from alembic.migration import MigrationContext

    def alembic_current() -> str | None:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    engine = create_engine_for(db_url)
    try:
        with engine.connect() as connection:
            assert stored_revisions(connection) is None
        assert (alembic_current(), at_head(engine)) == (None, False)
        upgrade(engine)
        assert (alembic_current(), at_head(engine)) == (HEAD_REVISION, True)
        for revision in (all_revisions()[0], "0099_future"):
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
            assert (alembic_current(), at_head(engine)) == (revision, False)
            with engine.connect() as connection:
                assert stored_revisions(connection) == [revision]
    finally:
        engine.dispose()
