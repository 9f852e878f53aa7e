"""The embedded KMS (``kms.backend: local``): keys made with ``cryptography``, kept in the
state store's ``kms_keys`` table, private keys only as AES-256-GCM ciphertext under the master
key (a 32-byte file, mode 0600, created by ``syncd init``).

Each private key is sealed as ``nonce (12) || ciphertext || tag (16)`` of its PKCS#8 DER with
the key id as associated data, so a sealed blob cannot be moved to another row unnoticed.

The store also keeps a key check value of the master key (HMAC-SHA256 of a fixed label, in
``key_checks``): a master key that does not match is refused before any key is made with it,
since keys sealed under the wrong key could never be opened by the right one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from syncd.config import read_private_file, write_new_key_file
from syncd.domain import KmsKeyState
from syncd.errors import ConfigError, KeyNotFoundError, KMSError
from syncd.kms.ahead import KeysAhead, generate_rsa
from syncd.kms.base import HashName, KeyManager, KeyRef, PrivateKeyFormat
from syncd.kms.kacls import kacls_private_key, wrap_private_key
from syncd.state.models import KeyCheck, KmsKey, utcnow

MASTER_KEY_WHERE = "kms.local.master_key_file"
MASTER_KEY_BYTES = 32
RSA_SIZES = (2048, 3072, 4096)
RECENT_PUBLIC_KEYS = 256
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


# Built once, with bind parameters: every user's key goes through these, and building and
# hashing a statement costs more than running it.
_INSERT = insert(KmsKey)
_ROW = select(KmsKey.label, KmsKey.state, KmsKey.public_key_der, KmsKey.sealed_private_key).where(
    KmsKey.id == bindparam("key_id")
)
_LOCATE = (
    select(KmsKey.id, KmsKey.state)
    .where(KmsKey.label == bindparam("label"), KmsKey.state != KmsKeyState.DESTROYED)
    .order_by(KmsKey.created_at, KmsKey.id)
)


def create_master_key(path: Path) -> None:
    """Write 32 random bytes to ``path`` with mode 0600; refuses to overwrite."""
    write_new_key_file(path, os.urandom(MASTER_KEY_BYTES), MASTER_KEY_WHERE)


# --- key check value --------------------------------------------------------------------------

CHECK_ALGORITHM = "hmac-sha256"
_CHECK_LABEL = b"syncd local KMS master key check v1"


def master_key_check_value(master_key: bytes) -> bytes:
    """The key check value of ``master_key``: it identifies the key and reveals nothing of it."""
    return hmac.new(master_key, _CHECK_LABEL, hashlib.sha256).digest()


def _opens(master_key: bytes, key_id: str, sealed: bytes) -> bool:
    try:
        AESGCM(master_key).decrypt(sealed[:12], sealed[12:], key_id.encode())
    except InvalidTag:
        return False
    return True


def _mismatch(path: Path, how: str) -> ConfigError:
    return ConfigError(
        MASTER_KEY_WHERE,
        f"{path} is not the master key of this state store ({how}); refused before any key "
        "is made or opened: restore the original master key file",
    )


def verify_master_key(
    engine: Engine, master_key: bytes, path: Path, *, record: bool = True
) -> str:
    """Refuse (ConfigError naming kms.local.master_key_file) a master key the store's keys were
    not sealed under; return how it was checked.

    The store's key check value decides. A store from before key check values has none: one
    sealed key is opened instead, and (with ``record``) the value is stored from then on, as
    it is for a store that holds no key yet.
    """
    with engine.connect() as connection:
        stored = connection.execute(
            select(KeyCheck.check_value).where(KeyCheck.name == MASTER_KEY_WHERE)
        ).scalar_one_or_none()
        if stored is not None:
            if not hmac.compare_digest(stored, master_key_check_value(master_key)):
                raise _mismatch(path, "its key check value differs from the one recorded")
            return "matches the recorded key check value"
        sample = connection.execute(
            select(KmsKey.id, KmsKey.sealed_private_key)
            .where(KmsKey.sealed_private_key.is_not(None))
            .order_by(KmsKey.created_at, KmsKey.id)
            .limit(1)
        ).one_or_none()
    if sample is not None and not _opens(master_key, sample.id, bytes(sample.sealed_private_key)):
        raise _mismatch(path, f"it does not open the sealed key {sample.id}")
    how = f"opens the sealed key {sample.id}" if sample is not None else "no key sealed yet"
    if not record:
        return how
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(KeyCheck).values(
                    name=MASTER_KEY_WHERE,
                    algorithm=CHECK_ALGORITHM,
                    check_value=master_key_check_value(master_key),
                    created_at=utcnow(),
                )
            )
    except IntegrityError:  # another process recorded it first: compare with that one
        return verify_master_key(engine, master_key, path, record=False)
    return f"{how}; key check value recorded"


def load_master_key(path: Path) -> bytes:
    """The master key, refused if missing, the wrong size, or readable by group or others."""
    where = MASTER_KEY_WHERE
    key = read_private_file(path, where, strict_mode=True)
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(where, f"{path} holds {len(key)} bytes; a master key is exactly 32")
    return key


def _pkcs8(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _describe_key(key: CertificateIssuerPrivateKeyTypes) -> tuple[str, int]:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec", key.curve.key_size
    raise KMSError(f"unsupported key type {type(key).__name__}; use RSA or EC")


class LocalKeyManager(KeyManager):
    """KeyManager over the state store's ``kms_keys`` table."""

    name = "local"

    def __init__(self, engine: Engine, master_key: bytes, wrapping_key: bytes | None) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise KMSError("the master key must be 32 bytes")
        self._engine = engine
        self._master = AESGCM(master_key)
        self._wrapping_key = wrapping_key
        self._loaded: dict[str, CertificateIssuerPrivateKeyTypes] = {}
        # Keys this process revoked or destroyed: never loaded again, even by a signature
        # that read the key while the revocation committed.
        self._retired: set[str] = set()
        self._cache_lock = threading.Lock()  # guards _loaded, _retired and _recent_public
        # Public keys of the keys this process created last: the next step (the certificate)
        # asks for them straight away. Public, so safe to keep; bounded, so memory stays flat.
        self._recent_public: OrderedDict[str, CertificateIssuerPublicKeyTypes] = OrderedDict()
        self._ahead = KeysAhead()

    # --- sealing ----------------------------------------------------------------------

    def _seal(self, key_id: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, plaintext, key_id.encode())

    def _unseal(self, key_id: str, sealed: bytes) -> bytes:
        try:
            return self._master.decrypt(sealed[:12], sealed[12:], key_id.encode())
        except InvalidTag:
            raise KMSError(
                f"key {key_id} does not decrypt with this master key "
                "(wrong kms.local.master_key_file, or the row was altered)"
            ) from None

    # --- storage ----------------------------------------------------------------------

    def _store(self, label: str, key: CertificateIssuerPrivateKeyTypes) -> KeyRef:
        algorithm, size = _describe_key(key)
        key_id = uuid.uuid4().hex
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with self._engine.begin() as connection:
            connection.execute(
                _INSERT,
                {
                    "id": key_id,
                    "label": label,
                    "algorithm": algorithm,
                    "key_size": size,
                    "public_key_der": public_der,
                    "sealed_private_key": self._seal(key_id, _pkcs8(key)),
                    "state": KmsKeyState.ACTIVE,
                    "created_at": utcnow(),
                },
            )
        with self._cache_lock:
            self._recent_public[key_id] = key.public_key()
            while len(self._recent_public) > RECENT_PUBLIC_KEYS:
                self._recent_public.popitem(last=False)
        return KeyRef(label=label, private_key_id=key_id, public_key_id=key_id)

    def _row(
        self, connection: Connection, key_id: str
    ) -> Row[str, KmsKeyState, bytes, bytes | None]:
        row = connection.execute(_ROW, {"key_id": key_id}).one_or_none()
        if row is None:
            raise KeyNotFoundError(f"no key {key_id} in the local KMS")
        return row

    def _unsealed_pkcs8(self, key_id: str, purpose: str) -> bytes:
        """The key's PKCS#8 DER, unsealed; KMSError unless the key is active."""
        with self._engine.connect() as connection:
            row = self._row(connection, key_id)
        if row.state is not KmsKeyState.ACTIVE or row.sealed_private_key is None:
            raise KMSError(f"key {key_id} ({row.label}) is {row.state.value}; cannot {purpose}")
        return self._unseal(key_id, row.sealed_private_key)

    def _signing_key(self, key_id: str) -> CertificateIssuerPrivateKeyTypes:
        """The key, unsealed and kept loaded: only signing keys (issuers) are; users' keys are
        each wrapped once, and keeping them in memory would grow with the directory."""
        with self._cache_lock:
            cached = None if key_id in self._retired else self._loaded.get(key_id)
        if cached is not None:
            return cached
        # The sealed blob is authenticated, so the key is the one we stored: skip the RSA
        # consistency check, which costs as much as a signature on every load.
        key = serialization.load_der_private_key(
            self._unsealed_pkcs8(key_id, "sign"), password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise KMSError(f"key {key_id} is not an RSA or EC key")
        with self._cache_lock:
            if key_id not in self._retired:
                self._loaded[key_id] = key
        return key

    def _forget(self, key_id: str) -> None:
        """No longer keep the key loaded, nor load it again (it is being revoked or destroyed;
        each signature then reads its state from the table)."""
        with self._cache_lock:
            self._loaded.pop(key_id, None)
            self._retired.add(key_id)

    # --- KeyManager ---------------------------------------------------------------------

    def create_key_pair(self, label: str, bits: int) -> KeyRef:
        if bits not in RSA_SIZES:
            raise KMSError(f"RSA key size {bits} not supported; use 2048, 3072 or 4096")
        return self._store(label, self._ahead.take(label, bits) or generate_rsa(bits))

    def generate_ahead(self, label: str, bits: int) -> None:
        if bits in RSA_SIZES:
            self._ahead.start(label, bits)

    def discard_ahead(self, label: str, bits: int) -> None:
        self._ahead.discard(label, bits)

    def close(self) -> None:
        """Drop the keys generated ahead and not taken (the table needs no closing)."""
        self._ahead.discard_all()

    def import_private_key(self, label: str, key: CertificateIssuerPrivateKeyTypes) -> KeyRef:
        return self._store(label, key)

    def public_key(self, key_id: str) -> CertificateIssuerPublicKeyTypes:
        with self._cache_lock:
            recent = self._recent_public.get(key_id)
        if recent is not None:
            return recent
        with self._engine.connect() as connection:
            der = self._row(connection, key_id).public_key_der
        key = serialization.load_der_public_key(der)
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise KMSError(f"key {key_id} is not an RSA or EC key")
        return key

    def sign(self, private_key_id: str, data: bytes, hash_name: HashName) -> bytes:
        key = self._signing_key(private_key_id)
        algorithm = _HASHES[hash_name]()
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), algorithm)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(algorithm))
        raise KMSError(f"key {private_key_id} cannot sign")

    def wrapped_private_key(self, private_key_id: str, key_format: PrivateKeyFormat) -> str:
        if self._wrapping_key is None:
            raise ConfigError(
                "kacls.wrapping_key_file", "required to wrap private keys for the KACLS"
            )
        # Sealed as PKCS#8 DER: kept as is for pkcs8, rewritten as RSAPrivateKey for pkcs1.
        der = kacls_private_key(self._unsealed_pkcs8(private_key_id, "wrap"), key_format)
        return wrap_private_key(der, self._wrapping_key)

    def locate(self, label: str) -> list[KeyRef]:
        with self._engine.connect() as connection:
            rows = connection.execute(_LOCATE, {"label": label}).all()
        return [KeyRef(label, key_id, key_id, state.value) for key_id, state in rows]

    def revoke(self, private_key_id: str, reason: str) -> None:
        self._forget(private_key_id)
        with self._engine.begin() as connection:
            self._row(connection, private_key_id)
            connection.execute(
                update(KmsKey)
                .where(KmsKey.id == private_key_id, KmsKey.state == KmsKeyState.ACTIVE)
                .values(state=KmsKeyState.REVOKED, revoked_at=utcnow(), revocation_reason=reason)
            )

    def destroy(self, private_key_id: str) -> None:
        self._forget(private_key_id)
        with self._engine.begin() as connection:
            row = self._row(connection, private_key_id)
            if row.state is KmsKeyState.ACTIVE:
                raise KMSError(
                    f"key {private_key_id} ({row.label}) must be revoked before it is destroyed"
                )
            connection.execute(
                update(KmsKey)
                .where(KmsKey.id == private_key_id, KmsKey.state == KmsKeyState.REVOKED)
                .values(state=KmsKeyState.DESTROYED, sealed_private_key=None, destroyed_at=utcnow())
            )
