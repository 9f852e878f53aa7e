"""Key pairs whose kaclsData is in another format than ``kacls.private_key_format``: listed by
``syncd status --other-key-format`` (table and JSON) and by ``syncd report``."""

from __future__ import annotations

import json

import yaml
from sqlalchemy import select, update

from syncd.state.models import KeyPair, User

from .conftest import Store, email


def _set_formats(store: Store, formats: dict[tuple[str, int], str]) -> None:
    database = store.database()
    try:
        with database.transaction() as session:
            for (name, generation), key_format in formats.items():
                user_id = session.scalar(select(User.id).where(User.email == email(name)))
                session.execute(
                    update(KeyPair)
                    .where(KeyPair.user_id == user_id, KeyPair.generation == generation)
                    .values(private_key_format=key_format)
                )
    finally:
        database.close()


def test_status_and_report_list_key_pairs_in_the_other_format(store: Store) -> None:
    # Rows from before the column are pkcs8 (the migration); a2 was uploaded as pkcs1.
    _set_formats(store, {("a1", 1): "pkcs8", ("a2", 1): "pkcs1", ("r1", 1): "pkcs8",
                         ("r1", 2): "pkcs1", ("d1", 1): "pkcs8"})
    listed = json.loads(store.syncd("status", "--other-key-format", "--format", "json").stdout)
    # Superseded (old mail) and disabled (can be enabled again) key pairs are still in Gmail.
    assert [(k["email"], k["generation"], k["status"], k["private_key_format"])
            for k in listed["key_pairs"]] == [
        (email("a1"), 1, "active", "pkcs8"),
        (email("d1"), 1, "disabled", "pkcs8"),
        (email("r1"), 1, "superseded", "pkcs8"),
    ]
    table = store.syncd("status", "--other-key-format").stdout
    assert "kaclsData format" in table and email("a1") in table and email("a2") not in table

    done = store.syncd("report", "--format", "json", "--no-record")
    assert done.returncode == 0, done.stderr
    key_format = json.loads(done.stdout)["report"]["key_format"]
    assert key_format["configured"] == "pkcs1"
    assert [(k["email"], k["generation"]) for k in key_format["other"]] == [
        (email("a1"), 1), (email("d1"), 1), (email("r1"), 1)
    ]
    text = store.syncd("report", "--no-record").stdout
    assert "Key pairs whose kaclsData is not pkcs1 (3)" in text

    # Configured the other way round, the PKCS#1 ones are listed.
    config = store.root / "pkcs8.yaml"
    config.write_text(yaml.safe_dump({"state": {"url": store.url},
                                      "kacls": {"private_key_format": "pkcs8"}}))
    listed = json.loads(
        store.syncd("status", "--other-key-format", "--format", "json", config=config).stdout
    )
    assert [(k["email"], k["generation"]) for k in listed["key_pairs"]] == [
        (email("a2"), 1), (email("r1"), 2)
    ]
    users = json.loads(store.syncd("status", "--format", "json", config=config).stdout)["users"]
    assert {u["email"]: u["private_key_format"] for u in users}[email("a2")] == "pkcs1"


def test_the_key_pairs_in_the_other_format_of_one_user(store: Store) -> None:
    from syncd.state.queries import key_pairs_in_other_format

    _set_formats(store, {("a1", 1): "pkcs8", ("r1", 1): "pkcs8", ("r1", 2): "pkcs8"})
    database = store.database()
    try:
        with database.sessions() as session:
            one = key_pairs_in_other_format(session, "pkcs1", " R1" + email("r1")[2:].upper())
            everyone = key_pairs_in_other_format(session, "pkcs1")
    finally:
        database.close()
    assert [(k["email"], k["generation"]) for k in one] == [(email("r1"), 1), (email("r1"), 2)]
    assert {k["email"] for k in everyone} > {email("r1")}
