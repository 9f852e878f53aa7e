"""The embedded KMS against a real state store (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

from syncd.errors import ConfigError, KeyNotFoundError, KMSError
from syncd.kms.kacls import parse_aes256_key, unwrap_private_key
from syncd.kms.local import LocalKeyManager, create_master_key, load_master_key
from syncd.state.db import Database
from syncd.state.models import KmsKey


@pytest.fixture
def database(migrated_db_url: str) -> Database:
    return Database.open(migrated_db_url)


@pytest.fixture
def wrapping_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def kms(database: Database, wrapping_key: bytes) -> LocalKeyManager:
    return LocalKeyManager(database.engine, os.urandom(32), wrapping_key)


def _spki(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_create_sign_locate_revoke_destroy(kms: LocalKeyManager) -> None:
    ref = kms.create_key_pair("user:alice@example.com:g1", 2048)
    public = kms.public_key(ref.public_key_id)
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048

    signature = kms.sign(ref.private_key_id, b"to be signed", "sha256")
    public.verify(signature, b"to be signed", padding.PKCS1v15(), hashes.SHA256())

    assert [r.private_key_id for r in kms.locate("user:alice@example.com:g1")] == [
        ref.private_key_id
    ]
    assert kms.locate("user:nobody") == []

    with pytest.raises(KMSError, match="must be revoked"):
        kms.destroy(ref.private_key_id)
    kms.revoke(ref.private_key_id, "left the company")
    kms.revoke(ref.private_key_id, "again")  # idempotent
    with pytest.raises(KMSError, match="revoked; cannot sign"):
        kms.sign(ref.private_key_id, b"x", "sha256")
    assert kms.locate("user:alice@example.com:g1")[0].state == "revoked"
    kms.destroy(ref.private_key_id)
    kms.destroy(ref.private_key_id)
    assert kms.locate("user:alice@example.com:g1") == []


def test_a_key_revoked_while_a_signature_loads_it_is_not_kept_loaded(
    kms: LocalKeyManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = kms.create_key_pair("issuer:rotated", 2048)
    read_sealed = LocalKeyManager._unsealed_pkcs8

    def revoked_meanwhile(self: LocalKeyManager, key_id: str, purpose: str) -> bytes:
        der = read_sealed(self, key_id, purpose)  # read while still active
        monkeypatch.setattr(LocalKeyManager, "_unsealed_pkcs8", read_sealed)
        self.revoke(key_id, "superseded")  # commits before the signature keeps the key
        return der

    monkeypatch.setattr(LocalKeyManager, "_unsealed_pkcs8", revoked_meanwhile)
    kms.sign(ref.private_key_id, b"begun before the revocation", "sha256")
    with pytest.raises(KMSError, match="revoked"):
        kms.sign(ref.private_key_id, b"after it", "sha256")

def test_unsupported_size_and_unknown_key(kms: LocalKeyManager) -> None:
    with pytest.raises(KMSError, match="1024 not supported"):
        kms.create_key_pair("x", 1024)
    with pytest.raises(KeyNotFoundError):
        kms.public_key("no-such-key")


def test_imported_ec_key_signs_ecdsa(kms: LocalKeyManager) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ref = kms.import_private_key("issuer:test", key)
    signature = kms.sign(ref.private_key_id, b"tbs", "sha384")
    key.public_key().verify(signature, b"tbs", ec.ECDSA(hashes.SHA384()))


def _openssl(*args: str, stdin: bytes) -> str:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout.decode()


def _cosmian_unwrap(kacls_data: str, wrapping_key: bytes) -> bytes:
    """Decrypt exactly as Cosmian's google_cse endpoint does: base64 of nonce 12 || ct || tag 16,
    AES-256-GCM, no associated data (not with syncd's own unwrap)."""
    raw = base64.b64decode(kacls_data, validate=True)
    return AESGCM(wrapping_key).decrypt(raw[:12], raw[12:], None)


def _openssl_public_der(private_der: bytes) -> bytes:
    pem = _openssl("pkey", "-inform", "DER", "-pubout", stdin=private_der)
    return base64.b64decode("".join(pem.strip().splitlines()[1:-1]))


def test_kacls_data_is_pkcs1_for_cosmian(kms: LocalKeyManager, wrapping_key: bytes) -> None:
    ref = kms.create_key_pair("user:bob@example.com:g1", 4096)
    kacls_data = kms.wrapped_private_key(ref.private_key_id, "pkcs1")
    der = _cosmian_unwrap(kacls_data, wrapping_key)
    # What Cosmian's KACLS parses (Rsa::private_key_from_der): a PKCS#1 RSAPrivateKey, whose
    # SEQUENCE opens with version 0 and the modulus (PKCS#8 has an AlgorithmIdentifier there).
    pem = _openssl("rsa", "-inform", "DER", "-traditional", stdin=der)
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    structure = _openssl("asn1parse", "-inform", "DER", stdin=der).splitlines()
    assert "INTEGER" in structure[1] and ":00" in structure[1]
    assert "INTEGER" in structure[2] and "rsaEncryption" not in "".join(structure)
    assert 2340 <= len(der) <= 2352  # Cosmian's published RSA 4096 sample: 2348 bytes
    assert _openssl_public_der(der) == _spki(kms.public_key(ref.public_key_id))  # type: ignore[arg-type]
    assert unwrap_private_key(kacls_data, wrapping_key) == der
    with pytest.raises(KMSError, match="does not decrypt"):
        unwrap_private_key(kacls_data, os.urandom(32))


def test_kacls_data_as_pkcs8_when_configured(kms: LocalKeyManager, wrapping_key: bytes) -> None:
    ref = kms.create_key_pair("user:bob@example.com:g1", 2048)
    der = _cosmian_unwrap(kms.wrapped_private_key(ref.private_key_id, "pkcs8"), wrapping_key)
    assert "rsaEncryption" in _openssl("asn1parse", "-inform", "DER", stdin=der)
    pem = _openssl("pkey", "-inform", "DER", stdin=der)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert _openssl_public_der(der) == _spki(kms.public_key(ref.public_key_id))  # type: ignore[arg-type]


def test_ec_key_cannot_be_written_as_pkcs1(kms: LocalKeyManager) -> None:
    ref = kms.import_private_key("user:ec", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(KMSError, match="cannot be written as PKCS#1"):
        kms.wrapped_private_key(ref.private_key_id, "pkcs1")


def test_private_keys_are_only_stored_sealed(
    kms: LocalKeyManager, database: Database, wrapping_key: bytes
) -> None:
    ref = kms.create_key_pair("user:carol@example.com:g1", 2048)
    pkcs8 = unwrap_private_key(kms.wrapped_private_key(ref.private_key_id, "pkcs8"), wrapping_key)
    with database.sessions() as session:
        row = session.scalars(select(KmsKey).where(KmsKey.id == ref.private_key_id)).one()
        sealed = row.sealed_private_key
    assert sealed is not None
    assert pkcs8 not in sealed and pkcs8[40:80] not in sealed
    url = database.url
    if url.startswith("sqlite"):
        on_disk = Path(url.removeprefix("sqlite:///")).read_bytes()
        assert pkcs8[40:80] not in on_disk


def test_wrong_master_key_and_moved_rows_are_detected(
    kms: LocalKeyManager, database: Database
) -> None:
    first = kms.create_key_pair("a", 2048)
    second = kms.create_key_pair("b", 2048)
    other = LocalKeyManager(database.engine, os.urandom(32), None)
    with pytest.raises(KMSError, match="does not decrypt with this master key"):
        other.sign(first.private_key_id, b"x", "sha256")
    with pytest.raises(ConfigError, match="kacls.wrapping_key_file"):
        other.wrapped_private_key(first.private_key_id, "pkcs1")

    # Copying one key's sealed blob onto another row must not yield a usable key.
    with database.transaction() as session:
        blob = session.get(KmsKey, first.private_key_id).sealed_private_key  # type: ignore[union-attr]
        session.execute(
            update(KmsKey).where(KmsKey.id == second.private_key_id).values(sealed_private_key=blob)
        )
    with pytest.raises(KMSError, match="row was altered"):
        kms.sign(second.private_key_id, b"x", "sha256")


def test_concurrent_use_from_threads(kms: LocalKeyManager) -> None:
    def provision(n: int) -> bool:
        ref = kms.create_key_pair(f"user:u{n}@example.com:g1", 2048)
        public = kms.public_key(ref.public_key_id)
        signature = kms.sign(ref.private_key_id, b"m", "sha256")
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, b"m", padding.PKCS1v15(), hashes.SHA256())
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(provision, range(8)))


def test_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "master.key"
    create_master_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(load_master_key(path)) == 32
    with pytest.raises(ConfigError, match="already exists"):
        create_master_key(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"kms.local.master_key_file: .* \(mode 0644\)"):
        load_master_key(path)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="holds 16 bytes"):
        load_master_key(short)
    with pytest.raises(ConfigError, match="file not found"):
        load_master_key(tmp_path / "absent.key")


def test_wrapping_key_encodings() -> None:
    key = os.urandom(32)
    assert parse_aes256_key(key, "k") == key
    assert parse_aes256_key(base64.b64encode(key) + b"\n", "k") == key
    assert parse_aes256_key(key.hex().encode(), "k") == key
    with pytest.raises(ConfigError, match="not an AES-256 key"):
        parse_aes256_key(b"too short", "kacls.wrapping_key_file")
