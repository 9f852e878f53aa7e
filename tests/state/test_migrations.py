"""The migrations produce exactly the models' schema, and audit_log refuses edits."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from syncd.errors import SchemaOutdatedError
from syncd.state.db import (
    all_revisions,
    create_engine_for,
    head_revision,
    migrations_dir,
    require_current_schema,
    schema_status,
    upgrade,
)
from syncd.state.models import Base

# Every revision of migrations/versions, oldest first.
REVISIONS = [
    "0001_initial",
    "0002_scope",
    "0003_fencing",
    "0004_key_check",
    "0005_key_format",
    "0006_permanent",
    "0007_kms_backend",
    "0008_lifecycle",
    "0009_instances",
    "0010_task_retention",
    "0011_instance_pid_namespace",
]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


def test_upgrade_applies_initial_revision_once(engine: Engine) -> None:
    assert all_revisions() == REVISIONS  # one line of revisions, in this order
    assert schema_status(engine) == (None, REVISIONS[-1])
    assert upgrade(engine) == REVISIONS
    assert upgrade(engine) == []
    assert schema_status(engine) == (REVISIONS[-1], head_revision())


def test_migrated_schema_equals_models(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    tables = set(inspect(engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_open_task_index_is_partial_and_unique(engine: Engine) -> None:
    upgrade(engine)
    insert_task = text(
        "INSERT INTO tasks (user_id, kind, status, reason, attempts, created_at, updated_at) "
        "VALUES (1, 'provision', :status, '', 0, :now, :now)"
    )
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, directory_id, source, in_scope, enabled, "
                "first_seen, last_seen) VALUES (1, 'a@example.com', 'd1', 'static', "
                "true, true, :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(insert_task, {"status": "done", "now": now})
        connection.execute(insert_task, {"status": "done", "now": now})
        connection.execute(insert_task, {"status": "pending", "now": now})
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(insert_task, {"status": "failed", "now": now})


def _insert_audit_row(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO audit_log (at, action, detail) VALUES (:at, 'test', '{}')"),
            {"at": datetime.now(UTC)},
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'forged'",
        "DELETE FROM audit_log",
    ],
)
def test_audit_log_refuses_update_and_delete(engine: Engine, statement: str) -> None:
    upgrade(engine)
    _insert_audit_row(engine)
    with pytest.raises(DBAPIError, match="audit_log is append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT action FROM audit_log")).scalars().all() == ["test"]


@pytest.mark.postgres
def test_audit_log_refuses_truncate_on_postgresql(postgres_db_url: str) -> None:
    engine = create_engine_for(postgres_db_url)
    try:
        upgrade(engine)
        _insert_audit_row(engine)
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("TRUNCATE audit_log"))
    finally:
        engine.dispose()


def test_require_current_schema_on_empty_database(engine: Engine) -> None:
    with pytest.raises(SchemaOutdatedError) as raised:
        require_current_schema(engine)
    message = str(raised.value)
    assert "is at revision none (empty database)" in message
    assert f"this syncd needs {REVISIONS[-1]}: run `syncd db upgrade`" in message
    assert engine.url.database is not None and engine.url.database in message
    upgrade(engine)
    require_current_schema(engine)


def test_downgrade_to_base_removes_everything(engine: Engine) -> None:
    upgrade(engine)
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert upgrade(engine) == REVISIONS


def test_require_current_schema_on_newer_database(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    with pytest.raises(SchemaOutdatedError, match="0099_future, which this syncd does not know"):
        require_current_schema(engine)


UPGRADER = """
import sys
from syncd.state.db import create_engine_for, upgrade

print(",".join(upgrade(create_engine_for(sys.argv[1]))))
"""


def test_concurrent_upgrades_apply_each_revision_once(db_url: str) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADER, db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], results
    assert sorted(out.strip() for out, _ in results) == ["", "", ",".join(REVISIONS)]


def test_0002_puts_users_of_blocked_passes_back_in_scope(engine: Engine) -> None:
    """Before 0002 a blocked pass marked its users out of scope although they kept their keys."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001_initial")
    at = datetime(2026, 11, 30, tzinfo=UTC)
    users = {1: "blocked", 2: "deprovisioned", 3: "leaving", 4: "listed"}
    with engine.begin() as connection:
        for user_id, name in users.items():
            connection.execute(
                text(
                    "INSERT INTO users (id, email, directory_id, source, in_scope, enabled, "
                    "first_seen, last_seen) VALUES (:id, :email, :id, 'static', :in_scope, "
                    ":yes, :at, :at)"
                ),
                {
                    "id": user_id,
                    "email": f"{name}@x.com",
                    "in_scope": name == "listed",
                    "yes": True,
                    "at": at,
                },
            )
            connection.execute(
                text(
                    "INSERT INTO key_pairs (user_id, generation, status, kms_label, created_at, "
                    "updated_at) VALUES (:id, 1, :status, 'k', :at, :at)"
                ),
                {
                    "id": user_id,
                    "status": "disabled" if name == "deprovisioned" else "active",
                    "at": at,
                },
            )
        connection.execute(
            text(
                "INSERT INTO tasks (user_id, kind, status, reason, attempts, created_at, "
                "updated_at) VALUES (3, 'deprovision', 'failed', '', 1, :at, :at)"
            ),
            {"at": at},
        )
    assert upgrade(engine) == REVISIONS[1:]
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT email, in_scope FROM users ORDER BY id")).all()
    assert [(email, bool(in_scope)) for email, in_scope in rows] == [
        ("blocked@x.com", True),
        ("deprovisioned@x.com", False),
        ("leaving@x.com", False),
        ("listed@x.com", True),
    ]


def test_key_format_revision_marks_existing_key_pairs_pkcs8(engine: Engine) -> None:
    # Rows written before revision 0005 hold PKCS#8 kaclsData (all syncd wrote then).
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001_initial")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, directory_id, source, in_scope, enabled, "
                "first_seen, last_seen) VALUES (1, 'a@example.com', 'a', 'static', true, true, "
                ":now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO key_pairs (id, user_id, generation, status, kms_label, "
                "gmail_key_pair_id, created_at, updated_at) "
                "VALUES (1, 1, 1, 'active', 'l', 'kp-1', :now, :now)"
            ),
            {"now": now},
        )
    assert "0005_key_format" in upgrade(engine)
    with engine.connect() as connection:
        found = connection.execute(text("SELECT private_key_format FROM key_pairs")).scalar_one()
    assert found == "pkcs8"
