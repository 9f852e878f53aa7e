"""build_snapshot's shortcut for the usual entry (syncd.directory.base._usual_identity): it
answers only where readable_identity gives the same (email, directory id), for any value."""

from __future__ import annotations

import itertools

from syncd.directory.base import (
    MAX_DIRECTORY_ID,
    MAX_EMAIL,
    RawEntry,
    _usual_identity,
    readable_identity,
)

EMAILS: list[object] = [
    "a@example.com",
    " Alice@Example.COM ",
    "a@example.com\n",
    "not-an-email",
    "a@b",
    "",
    None,
    42,
    "é@example.com",
    "a\x00@example.com",
    "a\x85@example.com",
    "a\u2028b@example.com",
    "l" * (MAX_EMAIL - 12) + "@example.com",
    "l" * (MAX_EMAIL - 11) + "@example.com",
]
IDS: list[object] = [
    "id-1",
    "  id-2 ",
    "",
    "   ",
    None,
    7,
    "n\x00l",
    "d\x7fl",
    "i" * MAX_DIRECTORY_ID,
    "i" * (MAX_DIRECTORY_ID + 1),
    "\udc80",
]


def test_the_shortcut_agrees_with_readable_identity() -> None:
    answered = 0
    for email, directory_id in itertools.product(EMAILS, IDS):
        entry = RawEntry("users.yaml entry 1", email, directory_id)
        usual = _usual_identity(entry)
        if usual is not None:
            answered += 1
            assert usual == readable_identity(entry), (email, directory_id)
    assert answered >= 6  # the usable ones


def test_usable_text_takes_the_shortcut() -> None:
    entry = RawEntry("dn", " Bob@Example.com ", " b1 ")
    assert _usual_identity(entry) == ("bob@example.com", "b1") == readable_identity(entry)
