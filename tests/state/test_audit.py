"""Audit records: stored with their detail, refused when they could carry a secret."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from syncd.state.audit import record
from syncd.state.db import Database
from syncd.state.models import AuditEvent, Run, User


@pytest.fixture
def database(migrated_db_url: str) -> Iterator[Database]:
    database = Database.open(migrated_db_url)
    yield database
    database.close()


def test_record_stores_user_run_and_detail(database: Database) -> None:
    with database.transaction() as session:
        run = Run(kind="sync")
        user = User(email="bob@example.com", directory_id="d-bob", source="static")
        session.add_all([run, user])
        session.flush()
        record(
            session,
            "keypair.uploaded",
            user=user,  # not flushed yet: record() flushes it to learn its id
            run_id=run.id,
            gmail_key_pair_id="kp-1",
            fingerprint="ab" * 32,
            chain=["leaf", "intermediate"],
        )
        record(session, "run.started", run_id=run.id)
    with database.transaction() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        bob = session.scalars(select(User)).one()
    first, second = events
    assert (first.action, first.user_id, first.email, first.run_id) == (
        "keypair.uploaded", bob.id, "bob@example.com", second.run_id
    )
    assert first.detail == {
        "gmail_key_pair_id": "kp-1", "fingerprint": "ab" * 32, "chain": ["leaf", "intermediate"]
    }
    assert (second.user_id, second.email, second.detail) == (None, None, {})
    assert abs((first.at - datetime.now(UTC)).total_seconds()) < 60


def test_explicit_email_wins_over_the_users(database: Database) -> None:
    with database.transaction() as session:
        user = User(email="carol@example.com", directory_id="d-carol", source="static")
        session.add(user)
        event = record(session, "identity.inserted", user=user, email="carol.alias@example.com")
    assert event.email == "carol.alias@example.com"


@pytest.mark.parametrize(
    "detail",
    [
        {"private_key": "x"},
        {"privateKey": "x"},
        {"ldap_password": "x"},
        {"master-key": "x"},
        {"step": {"kacls": {"wrapping_key": "x"}}},
        {"items": [{"ok": 1}, {"Passphrase": "x"}]},
    ],
)
def test_secret_looking_keys_are_refused(database: Database, detail: dict[str, Any]) -> None:
    with database.transaction() as session, pytest.raises(ValueError, match="looks like a secret"):
        record(session, "oops", **detail)
    with database.transaction() as session:
        assert session.scalars(select(AuditEvent)).all() == []


@pytest.mark.parametrize("value", [b"raw bytes", {1, 2}, float("nan"), object()])
def test_detail_must_be_json(database: Database, value: object) -> None:
    with database.transaction() as session, pytest.raises(ValueError, match="JSON-serialisable"):
        record(session, "oops", value=value)
