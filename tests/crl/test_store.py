"""The ``revocations`` and ``crl_state`` rows on both state stores (SQLite and PostgreSQL):
one row per issuer and serial, keyCompromise raising a milder reason, CRL numbers that only
go up, expired certificates left out once a CRL past their expiry has listed them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from syncd.app.crl import _next_number, _revoked
from syncd.domain import KeyPairStatus
from syncd.pipeline.steps.base import RevokedCertificate
from syncd.pipeline.steps.revocation import insert_new
from syncd.state.db import Database
from syncd.state.models import CrlState, KeyPair, Revocation, User

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _rows(database: Database) -> dict[tuple[str, str], tuple[str, str, datetime]]:
    with database.sessions() as session:
        return {
            (r.issuer_label, r.serial_hex): (r.email, r.reason, r.revoked_at)
            for r in session.scalars(select(Revocation))
        }


def test_revocations_are_recorded_once(migrated_db_url: str) -> None:
    database = Database.open(migrated_db_url)
    try:
        first = [
            RevokedCertificate(None, "ca1", "a1", "superseded"),
            RevokedCertificate(None, "ca1", "b2", "cessationOfOperation"),
            RevokedCertificate(None, "ca2", "a1", "superseded"),  # same serial, other CA
            RevokedCertificate(None, "ca1", "a1", "unspecified"),  # twice in one batch
        ]
        with database.engine.begin() as connection:
            assert insert_new(connection, "u@example.com", first, NOW) == first[:3]
        later = NOW + timedelta(days=1)
        again = [
            RevokedCertificate(None, "ca1", "b2", "superseded"),  # kept as it was
            RevokedCertificate(None, "ca1", "a1", "keyCompromise"),  # raised
            RevokedCertificate(None, "ca1", "c3", "keyCompromise"),  # new
        ]
        with database.engine.begin() as connection:
            assert insert_new(connection, "u@example.com", again, later) == again[1:]
        assert _rows(database) == {
            ("ca1", "a1"): ("u@example.com", "keyCompromise", NOW),
            ("ca1", "b2"): ("u@example.com", "cessationOfOperation", NOW),
            ("ca2", "a1"): ("u@example.com", "superseded", NOW),
            ("ca1", "c3"): ("u@example.com", "keyCompromise", later),
        }
    finally:
        database.close()


def test_crl_numbers_go_up_per_issuer(migrated_db_url: str) -> None:
    database = Database.open(migrated_db_url)
    try:
        numbers = []
        for label in ("ca1", "ca1", "ca2", "ca1"):
            with database.transaction() as session:
                numbers.append(_next_number(session, label, NOW))
        assert numbers == [1, 2, 1, 3]
        with database.sessions() as session:
            assert session.get(CrlState, "ca1").number == 3  # type: ignore[union-attr]
    finally:
        database.close()


def test_an_expired_certificate_leaves_the_crl_after_one_crl_past_its_expiry(
    migrated_db_url: str,
) -> None:
    database = Database.open(migrated_db_url)
    week = timedelta(days=7)
    try:
        with database.transaction() as session:
            user = User(email="u@example.com", directory_id="u", source="static")
            session.add(user)
            session.flush()
            expiries = {"a1": NOW - week - timedelta(hours=1), "b2": NOW - timedelta(days=1),
                        "c3": NOW + week, "d4": None}
            for generation, (serial, not_after) in enumerate(expiries.items(), start=1):
                pair = KeyPair(user_id=user.id, generation=generation, kms_label=serial,
                               status=KeyPairStatus.DISABLED, not_after=not_after)
                session.add(pair)
                session.flush()
                insert_new(session.connection(), user.email,
                           [RevokedCertificate(pair.id, "ca1", serial, "superseded")], NOW)
            insert_new(session.connection(), user.email,  # no key pair: kept for ever
                       [RevokedCertificate(None, "ca1", "e5", "keyCompromise")], NOW)
        with database.sessions() as session:
            listed = {entry.serial for entry in _revoked(session, "ca1", NOW, week)}
            later = {entry.serial for entry in _revoked(session, "ca1", NOW + 2 * week, week)}
        assert listed == {0xB2, 0xC3, 0xD4, 0xE5}  # a1 expired more than a CRL ago
        assert later == {0xD4, 0xE5}
    finally:
        database.close()
