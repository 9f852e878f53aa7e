"""UTCDateTime on SQLite: the stored text read back as an aware UTC datetime, whatever form
the text takes (syncd's own, another offset, a Z, a date alone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from syncd.state.types import UTCDateTime

metadata = MetaData()
stamps = Table(
    "stamps", metadata, Column("id", Integer, primary_key=True), Column("at", UTCDateTime())
)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-11-30 12:00:00.123456", datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-30 12:00:00", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30 14:00:00+02:00", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30T12:00:00Z", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
        (None, None),
    ],
)
def test_stored_text_reads_as_aware_utc(stored: str | None, expected: datetime | None) -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO stamps (id, at) VALUES (1, :at)"), {"at": stored})
        value = connection.scalar(select(stamps.c.at))
    assert value == expected
    if value is not None:
        assert value.tzinfo is UTC


def test_written_values_come_back_unchanged() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    written = datetime(2026, 11, 30, 12, 30, 1, 5, tzinfo=timezone(timedelta(hours=-5)))
    with engine.begin() as connection:
        connection.execute(insert(stamps), [{"id": 1, "at": written}])
        assert connection.scalar(select(stamps.c.at)) == written
        with pytest.raises(Exception, match="naive datetime"):
            connection.execute(insert(stamps), [{"id": 2, "at": datetime(2026, 1, 1)}])
