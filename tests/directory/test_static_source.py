"""The static directory source: YAML and CSV files, normalisation, skipped entries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.directory.base import DirectoryUser, SourceError
from syncd.directory.static import StaticSource

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def test_yaml_users_are_normalised_and_bad_entries_skipped(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(
        """
users:
  - {email: " Alice@Example.COM ", id: a1}
  - {email: bob@example.com, id: 42, enabled: false}
  - {email: not-an-email, id: x1}
  - {id: x2}
  - {email: carol@example.com}
  - {email: alice@example.com, id: a2}
  - {email: dave@example.com, id: a1}
  - {email: erin@example.com, id: e1, enabled: maybe}
  - just a string
"""
    )
    snapshot = StaticSource(path).read(NOW)
    assert snapshot.users == (
        DirectoryUser("alice@example.com", "a1", True),
        DirectoryUser("bob@example.com", "42", False),
    )
    reasons = {skip.where: skip.reason for skip in snapshot.skipped}
    assert reasons == {
        "users.yaml entry 3": "invalid email 'not-an-email'",
        "users.yaml entry 4": "no email",
        "users.yaml entry 5": "no stable id for carol@example.com",
        "users.yaml entry 6": "duplicate email alice@example.com (first at users.yaml entry 1)",
        "users.yaml entry 7": "duplicate id a1 (first at users.yaml entry 1)",
        "users.yaml entry 8": "enabled must be true or false, not 'maybe'",
        "users.yaml entry 9": "no email",
    }


def test_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("email,id,enabled\nalice@example.com,a1,yes\nbob@example.com,b1,no\n,c1,\n")
    snapshot = StaticSource(path).read(NOW)
    assert [(u.email, u.enabled) for u in snapshot.users] == [
        ("alice@example.com", True),
        ("bob@example.com", False),
    ]
    assert [s.where for s in snapshot.skipped] == ["users.csv line 4"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("users.csv", "mail,uid\nalice@example.com,1\n", "must name the columns email and id"),
        ("users.yaml", "users: {alice: 1}", "expected a list of users"),
        ("users.yaml", "users: [unclosed", "invalid YAML"),
    ],
)
def test_unreadable_files_are_source_failures(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SourceError, match=message):
        StaticSource(path).read(NOW)


def test_missing_file_is_a_source_failure(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="directory.static.path: file not found"):
        StaticSource(tmp_path / "absent.yaml").read(NOW)


def test_empty_file_is_an_empty_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("")
    assert StaticSource(path).read(NOW).users == ()
