"""Key pairs generated ahead of create_key_pair (syncd.kms.ahead) and the embedded KMS's use."""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

import syncd.kms.ahead as ahead
import syncd.kms.local as local
from syncd.kms.ahead import KeysAhead, generate_rsa
from syncd.kms.local import LocalKeyManager
from syncd.state.db import Database
from syncd.state.models import KmsKey


def _counting() -> tuple[list[int], KeysAhead]:
    calls: list[int] = []

    def generate(bits: int) -> rsa.RSAPrivateKey:
        calls.append(bits)
        return generate_rsa(bits)

    return calls, KeysAhead(generate)


def test_a_key_started_ahead_is_generated_once_and_taken_once() -> None:
    calls, keys = _counting()
    keys.start("syncd:user:a@example.com:1", 1024)
    keys.start("syncd:user:a@example.com:1", 1024)
    first = keys.take("syncd:user:a@example.com:1", 1024)
    assert isinstance(first, rsa.RSAPrivateKey) and first.key_size == 1024
    assert calls == [1024]
    assert keys.take("syncd:user:a@example.com:1", 1024) is None
    assert keys.take("syncd:user:b@example.com:1", 1024) is None
    assert keys.waiting() == 0


def test_keys_waiting_are_bounded_the_oldest_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead, "MAX_WAITING", 2)
    _, keys = _counting()
    for label in ("a", "b", "c"):
        keys.start(label, 1024)
    assert keys.waiting() == 2
    assert keys.take("a", 1024) is None
    assert keys.take("c", 1024) is not None


def test_the_embedded_kms_stores_the_key_generated_ahead(
    migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database.open(migrated_db_url)
    try:
        kms = LocalKeyManager(database.engine, b"k" * 32, None)
        kms.generate_ahead("syncd:user:a@example.com:1", 2048)

        def no_generation(bits: int) -> rsa.RSAPrivateKey:
            raise AssertionError("create_key_pair generated a key of its own")

        monkeypatch.setattr(local, "generate_rsa", no_generation)
        ref = kms.create_key_pair("syncd:user:a@example.com:1", 2048)
        public = kms.public_key(ref.public_key_id)
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
        # Without a key generated ahead it makes one itself (here: the patched function).
        with pytest.raises(AssertionError, match="generated a key of its own"):
            kms.create_key_pair("syncd:user:b@example.com:1", 2048)
        with database.sessions() as session:
            assert session.scalar(select(func.count()).select_from(KmsKey)) == 1
    finally:
        database.close()


def _gated() -> tuple[list[str], threading.Event, KeysAhead, int]:
    """Keys whose generation waits on a gate, and enough of them started to keep every
    key-generation thread of the process busy (the rest queue behind them); ``generated``
    lists each generation as it begins."""
    generated: list[str] = []
    gate = threading.Event()
    running = threading.Semaphore(0)

    def generate(bits: int) -> rsa.RSAPrivateKey:
        generated.append(threading.current_thread().name)
        running.release()
        gate.wait(timeout=30)
        return generate_rsa(bits)

    keys = KeysAhead(generate)
    busy = os.cpu_count() or 1
    for number in range(busy):
        keys.start(f"busy{number}", 1024)
    for _ in range(busy):  # every thread is in one (an earlier test's key may have held one)
        assert running.acquire(timeout=30)
    return generated, gate, keys, busy


def test_a_discarded_key_not_yet_generating_is_never_generated() -> None:
    generated, gate, keys, busy = _gated()
    try:
        keys.start("held", 1024)
        keys.discard("held", 1024)
        keys.discard("never started", 1024)
        assert keys.take("held", 1024) is None
    finally:
        gate.set()
    assert all(keys.take(f"busy{number}", 1024) is not None for number in range(busy))
    _threads_idle()
    assert len(generated) == busy and keys.waiting() == 0


def test_closing_the_embedded_kms_drops_every_key_not_taken(migrated_db_url: str) -> None:
    generated, gate, keys, busy = _gated()
    database = Database.open(migrated_db_url)
    try:
        kms = LocalKeyManager(database.engine, b"k" * 32, None)
        kms._ahead = keys  # the gated keys, as the KMS's own
        keys.start("queued", 1024)
        kms.close()
        assert keys.waiting() == 0
    finally:
        gate.set()
        database.close()
    _threads_idle()
    assert len(generated) == busy  # those already generating went on; the queued one never ran


def _threads_idle() -> None:
    """Wait until the process's key-generation threads have run what was queued before."""
    for _ in range(os.cpu_count() or 1):
        ahead._threads().submit(lambda: None).result(timeout=30)
