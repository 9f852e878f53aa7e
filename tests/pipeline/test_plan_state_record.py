"""plan_state.record_snapshot on a real state store (SQLite and PostgreSQL): what a read
writes back to the users, and ``last_seen`` kept to within LAST_SEEN_STEP (an idle pass does
not rewrite every row)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from syncd.directory.base import DirectoryUser, SkippedEntry, Snapshot
from syncd.domain import KeyPairStatus
from syncd.pipeline import plan_state
from syncd.pipeline.plan_state import LAST_SEEN_STEP
from syncd.state.db import Database
from syncd.state.models import KeyPair, User

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.fixture
def database(migrated_db_url: str) -> Iterator[Database]:
    database = Database.open(migrated_db_url)
    try:
        yield database
    finally:
        database.close()


def _record(
    database: Database,
    now: datetime,
    users: list[DirectoryUser],
    skipped: tuple[SkippedEntry, ...] = (),
    kept_in_scope: frozenset[str] = frozenset(),
) -> None:
    with database.transaction() as session:
        snapshot = Snapshot("static", now, tuple(users), skipped)
        plan_state.record_snapshot(session, snapshot, now, None, kept_in_scope)


def _rows(database: Database) -> dict[str, dict[str, Any]]:
    with database.sessions() as session:
        return {
            user.email: {
                "directory_id": user.directory_id,
                "in_scope": user.in_scope,
                "enabled": user.enabled,
                "missing_since": user.missing_since,
                "last_seen": user.last_seen,
                "first_seen": user.first_seen,
                "aliases": user.aliases,
            }
            for user in session.scalars(select(User))
        }


def _user(name: str, **kwargs: Any) -> DirectoryUser:
    return DirectoryUser(f"{name}@x.com", f"id-{name}", **kwargs)


def test_an_idle_read_within_the_step_writes_nothing(database: Database) -> None:
    users = [_user("a"), _user("b", enabled=False), _user("c", aliases=("c2@x.com",))]
    _record(database, T0, users)
    before = _rows(database)
    assert {row["last_seen"] for row in before.values()} == {T0}
    assert before["c@x.com"]["aliases"] == ["c2@x.com"]
    _record(database, T0 + LAST_SEEN_STEP / 2, users)
    assert _rows(database) == before


def test_last_seen_moves_once_it_is_a_step_old(database: Database) -> None:
    users = [_user("a"), _user("b")]
    _record(database, T0, users)
    later = T0 + LAST_SEEN_STEP + timedelta(minutes=1)
    _record(database, later, users)
    assert {row["last_seen"] for row in _rows(database).values()} == {later}


def test_changes_are_written_and_a_user_listed_again_is_seen_at_once(database: Database) -> None:
    _record(database, T0, [_user("a"), _user("b"), _user("c"), _user("d")])
    t1 = T0 + timedelta(minutes=10)
    # b leaves, c is disabled and gets an alias, d is named by an unusable entry
    unusable = (SkippedEntry("users.yaml entry 4", "bad", "d@x.com", "id-d"),)
    _record(database, t1, [_user("a"), _user("c", enabled=False, aliases=("c2@x.com",))], unusable)
    rows = _rows(database)
    assert rows["b@x.com"]["missing_since"] == t1 and not rows["b@x.com"]["in_scope"]
    assert rows["c@x.com"]["enabled"] is False and rows["c@x.com"]["aliases"] == ["c2@x.com"]
    assert rows["d@x.com"]["missing_since"] is None and rows["d@x.com"]["in_scope"] is False
    assert all(row["last_seen"] == T0 for row in rows.values())
    t2 = t1 + timedelta(minutes=10)
    _record(database, t2, [_user("a"), _user("b"), _user("c"), _user("d")])
    rows = _rows(database)
    for name in ("b", "d"):  # listed again: seen now, whatever the step
        assert rows[f"{name}@x.com"]["in_scope"] and rows[f"{name}@x.com"]["missing_since"] is None
        assert rows[f"{name}@x.com"]["last_seen"] == t2
    assert rows["a@x.com"]["last_seen"] == T0  # listed all along: within the step
    assert rows["c@x.com"]["enabled"] is True and rows["c@x.com"]["aliases"] == []


def test_unlisted_users_kept_in_scope_keep_their_last_seen(database: Database) -> None:
    _record(database, T0, [_user("a"), _user("held")])
    later = T0 + LAST_SEEN_STEP * 2
    unusable = (SkippedEntry("users.yaml entry 2", "bad", "held@x.com", "id-held"),)
    _record(database, later, [_user("a")], unusable, kept_in_scope=frozenset({"held@x.com"}))
    rows = _rows(database)
    assert rows["a@x.com"]["last_seen"] == later
    held = rows["held@x.com"]
    assert held["in_scope"] and held["missing_since"] is None and held["last_seen"] == T0


def test_a_new_directory_id_is_taken_when_nothing_is_held(database: Database) -> None:
    _record(database, T0, [_user("a")])
    _record(database, T0 + timedelta(minutes=5), [DirectoryUser("a@x.com", "id-new")])
    assert _rows(database)["a@x.com"]["directory_id"] == "id-new"


def test_views_take_the_latest_active_generation_and_earlier_ones_oldest_first(
    database: Database,
) -> None:
    """Whatever order the rows come back in (load_views reads them unordered)."""
    _record(database, T0, [_user("a")])
    statuses = {
        3: KeyPairStatus.SUPERSEDED,
        1: KeyPairStatus.DISABLED,
        5: KeyPairStatus.ACTIVE,
        2: KeyPairStatus.SUPERSEDED,
        4: KeyPairStatus.ACTIVE,
    }
    with database.transaction() as session:
        user_id = session.scalar(select(User.id).where(User.email == "a@x.com"))
        for generation, status in statuses.items():
            session.add(
                KeyPair(
                    user_id=user_id,
                    generation=generation,
                    status=status,
                    kms_label=f"a:g{generation}",
                    not_after=T0 + timedelta(days=generation),
                )
            )
    with database.sessions() as session:
        (view,) = plan_state.load_views(session)
    assert view.active is not None and view.active.generation == 5
    assert view.active.not_after == T0 + timedelta(days=5)
    assert [kp.generation for kp in view.retired] == [1, 2, 3]
    assert view.holds_credentials
