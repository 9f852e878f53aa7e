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


def test_org_unit_and_groups_columns(tmp_path: Path) -> None:
    """Optional: what policy.rollout_order matches (an empty cell is no org unit)."""
    path = tmp_path / "users.csv"
    path.write_text(
        "email,id,org_unit,groups\n"
        "alice@example.com,a1,/Pilot,it@example.com;pilots@example.com\n"
        "bob@example.com,b1, ,\n"
    )
    alice, bob = StaticSource(path).read(NOW).users
    assert (alice.org_unit, alice.groups) == ("/Pilot", ("it@example.com", "pilots@example.com"))
    assert (bob.org_unit, bob.groups) == (None, ())
    yaml_path = tmp_path / "users.yaml"
    yaml_path.write_text("- {email: carol@example.com, id: c1, org_unit: /IT, groups: [ops]}\n")
    (carol,) = StaticSource(yaml_path).read(NOW).users
    assert (carol.org_unit, carol.groups) == ("/IT", ("ops",))


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


def test_skipped_entries_keep_the_identity_they_still_have(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(
        """
- {email: Erin@Example.com, id: e1, enabled: maybe}
- {email: not-an-email, id: x1}
- {email: carol@example.com}
"""
    )
    skipped = StaticSource(path).read(NOW).skipped
    assert [(s.where, s.email, s.directory_id) for s in skipped] == [
        ("users.yaml entry 1", "erin@example.com", "e1"),
        ("users.yaml entry 2", None, "x1"),
        ("users.yaml entry 3", "carol@example.com", None),
    ]


def test_values_the_state_store_cannot_hold_are_skipped_with_a_reason(tmp_path: Path) -> None:
    long_local = "l" * 310
    path = tmp_path / "users.yaml"
    path.write_text(
        f"""
- {{email: ok@example.com, id: ok1}}
- {{email: longid@example.com, id: "{"i" * 256}"}}
- {{email: "{long_local}@example.com", id: long-email}}
- {{email: nul@example.com, id: "n\\0l"}}
- {{email: del@example.com, id: "d\\x7fl"}}
- {{email: "c\\x85@example.com", id: c1}}
- {{email: max@example.com, id: "{"m" * 255}"}}
"""
    )
    snapshot = StaticSource(path).read(NOW)
    assert [u.email for u in snapshot.users] == ["ok@example.com", "max@example.com"]
    reasons = [(s.where, s.reason) for s in snapshot.skipped]
    assert [where for where, _ in reasons] == [f"users.yaml entry {n}" for n in (2, 3, 4, 5, 6)]
    assert reasons[0][1].startswith(
        "directory id of longid@example.com longer than 255 characters (256): 'iii"
    )
    assert reasons[1][1].startswith("email longer than 320 characters (322): 'lll")
    assert reasons[2][1] == (
        "directory id 'n\\x00l' of nul@example.com contains a control character (U+0000)"
    )
    assert "(U+007F)" in reasons[3][1]
    assert reasons[4][1] == "email 'c\\x85@example.com' contains a control character (U+0085)"
    # The entries still name whom they can: a too-long id is not an identity, the email is.
    assert (snapshot.skipped[0].email, snapshot.skipped[0].directory_id) == (
        "longid@example.com",
        None,
    )
    assert (snapshot.skipped[1].email, snapshot.skipped[1].directory_id) == (None, "long-email")


def test_csv_from_a_spreadsheet_with_a_bom_and_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(
        "\ufeffemail;id;enabled\r\nalice@example.com;a1;yes\r\nbob@example.com;b1;no\r\n".encode()
    )
    snapshot = StaticSource(path).read(NOW)
    assert snapshot.users == (
        DirectoryUser("alice@example.com", "a1", True),
        DirectoryUser("bob@example.com", "b1", False),
    )
    assert snapshot.skipped == ()


def test_csv_with_a_bom_and_commas(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes("\ufeffemail,id\nalice@example.com,a1\n".encode())
    assert [u.email for u in StaticSource(path).read(NOW).users] == ["alice@example.com"]


def test_limits_match_the_state_store_columns() -> None:
    from syncd.directory.base import MAX_DIRECTORY_ID, MAX_EMAIL, MAX_WHERE
    from syncd.state.models import SkippedDirectoryEntry, User

    assert User.__table__.c.email.type.length == MAX_EMAIL
    assert User.__table__.c.directory_id.type.length == MAX_DIRECTORY_ID
    assert SkippedDirectoryEntry.__table__.c.entry.type.length == MAX_WHERE
