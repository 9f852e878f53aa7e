"""Aliases from the static source, and how every source's aliases are normalised: lower-cased,
the primary address and duplicates removed, an unusable value dropped with a warning naming
the entry (the user kept)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.directory.base import RawEntry, build_snapshot, clean_aliases
from syncd.directory.probe import probe_directory
from syncd.directory.static import StaticSource

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def test_aliases_are_normalised_sorted_the_primary_and_duplicates_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    values = ["ALICE.S@example.com", " Al@Example.COM ", "alice@example.com", "al@example.com",
              "not an address", "josé@example.com", 42, "x@" + "a" * 320 + ".com", ""]
    with caplog.at_level(logging.WARNING, logger="syncd.directory"):
        kept = clean_aliases("users.yaml entry 1", "alice@example.com", values)
    assert kept == ("al@example.com", "alice.s@example.com")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5
    assert all(w.startswith("directory entry users.yaml entry 1 (alice@example.com): alias ")
               for w in warnings)
    assert "'not an address'" in warnings[0] and "'josé@example.com'" in warnings[1]


def test_a_bad_alias_never_skips_the_user() -> None:
    entry = RawEntry("line 2", "bob@example.com", "b1", aliases=("bob", "Bob@Example.com"))
    snapshot = build_snapshot("static", [entry], NOW)
    assert [(u.email, u.aliases) for u in snapshot.users] == [("bob@example.com", ())]
    assert snapshot.skipped == ()


def test_csv_aliases_column_semicolon_separated(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(
        "email,id,aliases\n"
        "alice@example.com,a1,\"Al@example.com; alice.smith@example.com\"\n"
        "bob@example.com,b1,\n"
    )
    users = {u.email: u.aliases for u in StaticSource(path).read(NOW).users}
    assert users == {"alice@example.com": ("al@example.com", "alice.smith@example.com"),
                     "bob@example.com": ()}


def test_csv_in_a_semicolon_locale_quotes_the_aliases_cell(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("email;id;aliases\nalice@example.com;a1;\"al@example.com;a.l@example.com\"\n")
    [alice] = StaticSource(path).read(NOW).users
    assert alice.aliases == ("a.l@example.com", "al@example.com")


def test_csv_without_the_column_has_no_aliases(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("email,id\nalice@example.com,a1\n")
    assert [u.aliases for u in StaticSource(path).read(NOW).users] == [()]


def test_yaml_aliases_as_a_list_or_a_text(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(
        "- {email: alice@example.com, id: a1, aliases: [Al@example.com, alice@example.com]}\n"
        "- {email: bob@example.com, id: b1, aliases: 'bobby@example.com;rob@example.com'}\n"
    )
    users = {u.email: u.aliases for u in StaticSource(path).read(NOW).users}
    assert users == {"alice@example.com": ("al@example.com",),
                     "bob@example.com": ("bobby@example.com", "rob@example.com")}


def test_directory_test_finds_a_user_by_an_alias(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("email,id,aliases\nalice@example.com,a1,al@example.com\nbob@example.com,b1,\n")
    probe = probe_directory(StaticSource(path), NOW, "AL@example.com")
    assert [u.email for u in probe.users] == ["alice@example.com"]
    assert probe.other_addresses == ["alice@example.com"]
