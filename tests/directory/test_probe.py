"""One timed read of the directory (``syncd directory test``'s work): the whole directory, or
one user found by a lookup or by filtering a whole read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.directory.probe import probe_directory
from syncd.directory.static import StaticSource

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _ticks(*values: float) -> Iterator[float]:
    yield from values


def _users(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(
        "users:\n"
        "  - {email: alice@example.com, id: a1}\n"
        "  - {email: bob@example.com, id: b1, enabled: false}\n"
        "  - {email: not-an-email, id: x1}\n"
    )
    return path


def test_a_whole_read_is_timed_and_counted(tmp_path: Path) -> None:
    clock = _ticks(10.0, 12.5)
    probe = probe_directory(StaticSource(_users(tmp_path)), NOW, clock=lambda: next(clock))
    assert probe.seconds == 2.5
    assert [user.email for user in probe.users] == ["alice@example.com", "bob@example.com"]
    assert probe.enabled == 1
    assert [skip.where for skip in probe.snapshot.skipped] == ["users.yaml entry 3"]
    assert probe.other_addresses == []


def test_one_user_is_filtered_from_a_whole_read_by_its_normalised_address(
    tmp_path: Path,
) -> None:
    probe = probe_directory(StaticSource(_users(tmp_path)), NOW, " Bob@Example.COM ")
    assert probe.wanted == "bob@example.com"
    assert probe.users == [DirectoryUser("bob@example.com", "b1", False)]
    assert probe.other_addresses == []


class _LookupSource:
    """A source that can fetch one user (as the LDAP source does): found by an alias."""

    name = "lookup"

    def __init__(self) -> None:
        self.looked_up: list[str] = []

    def read(self, now: datetime) -> Snapshot:
        raise AssertionError("a source with lookup is not read whole for one user")

    def lookup(self, email: str, now: datetime) -> Snapshot:
        self.looked_up.append(email)
        return Snapshot("lookup", now, (DirectoryUser("carol@example.com", "c1", True),))


def test_a_source_with_lookup_fetches_one_user_and_names_the_address_syncd_uses() -> None:
    source = _LookupSource()
    probe = probe_directory(source, NOW, "c.alias@example.com")
    assert source.looked_up == ["c.alias@example.com"]
    assert probe.other_addresses == ["carol@example.com"]
