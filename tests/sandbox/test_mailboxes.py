"""The sandbox's Gmail state store: kept across restarts, one writer per user at a time, and
the earlier one-file-per-user layout imported."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from syncd.sandbox.mailboxes import Mailboxes


def test_state_survives_a_new_store_and_is_per_user(tmp_path: Path) -> None:
    db = tmp_path / "state" / "mailboxes.db"
    with Mailboxes(db).state("Alice@Example.com") as state:
        state["keypairs"].append({"keyPairId": "k1"})
    with Mailboxes(db).state("bob@example.com") as state:
        assert state == {"keypairs": [], "identities": []}
    with Mailboxes(db).state("alice@example.com") as state:
        assert state["keypairs"] == [{"keyPairId": "k1"}]


def test_a_block_that_raises_saves_nothing(tmp_path: Path) -> None:
    mailboxes = Mailboxes(tmp_path / "m.db")
    try:
        with mailboxes.state("a@example.com") as state:
            state["identities"].append({"emailAddress": "a@example.com"})
            raise RuntimeError("refused")
    except RuntimeError:
        pass
    with mailboxes.state("a@example.com") as state:
        assert state["identities"] == []


def test_concurrent_changes_to_one_user_are_not_lost(tmp_path: Path) -> None:
    mailboxes = Mailboxes(tmp_path / "m.db")

    def add(number: int) -> None:
        for index in range(20):
            with mailboxes.state("a@example.com") as state:
                state["keypairs"].append({"keyPairId": f"{number}-{index}"})

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with mailboxes.state("a@example.com") as state:
        assert len(state["keypairs"]) == 80


def test_files_of_the_earlier_layout_are_imported_once(tmp_path: Path) -> None:
    legacy = tmp_path / "state" / "users"
    legacy.mkdir(parents=True)
    saved = {"keypairs": [{"keyPairId": "old"}], "identities": []}
    (legacy / "carol@example.com.json").write_text(json.dumps(saved))
    mailboxes = Mailboxes(tmp_path / "state" / "mailboxes.db", legacy_folder=legacy)
    with mailboxes.state("carol@example.com") as state:
        assert state == saved
    assert not legacy.exists()
    assert (tmp_path / "state" / "users.imported" / "carol@example.com.json").exists()
