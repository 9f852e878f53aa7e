"""The master key check value: a master key other than the store's is refused before use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from syncd.errors import ConfigError
from syncd.kms.local import LocalKeyManager, master_key_check_value, verify_master_key
from syncd.state.db import Database
from syncd.state.models import KeyCheck, KmsKey

PATH = Path("/etc/syncd/master.key")


@pytest.fixture
def database(migrated_db_url: str) -> Database:
    return Database.open(migrated_db_url)


def _stored(database: Database) -> list[bytes]:
    with database.sessions() as session:
        return list(session.scalars(select(KeyCheck.check_value)))


def test_first_use_records_then_refuses_another_key(database: Database) -> None:
    right, wrong = os.urandom(32), os.urandom(32)
    assert "recorded" in verify_master_key(database.engine, right, PATH)
    assert _stored(database) == [master_key_check_value(right)]
    assert "matches" in verify_master_key(database.engine, right, PATH)
    with pytest.raises(ConfigError, match="is not the master key of this state store") as raised:
        verify_master_key(database.engine, wrong, PATH)
    assert raised.value.where == "kms.local.master_key_file"
    assert str(PATH) in str(raised.value)
    assert right.hex() not in str(raised.value) and wrong.hex() not in str(raised.value)


def test_store_from_before_check_values_is_judged_by_a_sealed_key(database: Database) -> None:
    """A store that has keys but no check value: one sealed key decides, then it is recorded."""
    right, wrong = os.urandom(32), os.urandom(32)
    LocalKeyManager(database.engine, right, None).create_key_pair("old", 2048)
    assert _stored(database) == []
    with pytest.raises(ConfigError, match="does not open the sealed key"):
        verify_master_key(database.engine, wrong, PATH)
    assert _stored(database) == []  # a refused key records nothing
    assert "opens the sealed key" in verify_master_key(database.engine, right, PATH, record=False)
    assert _stored(database) == []  # record=False (config check) writes nothing
    assert "opens the sealed key" in verify_master_key(database.engine, right, PATH)
    assert _stored(database) == [master_key_check_value(right)]
    with database.transaction() as session:
        session.execute(delete(KmsKey))
    with pytest.raises(ConfigError):  # the recorded value decides from now on
        verify_master_key(database.engine, wrong, PATH)
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(KeyCheck)) == 1
