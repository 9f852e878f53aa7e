"""No private key, master key, wrapping key or password in clear in the database, the logs or
the command output of a full run (SQLite file bytes included)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import MetaData, create_engine, select

from syncd.kms.kacls import unwrap_private_key

from .conftest import P12_PASSWORD, Installation


def _encodings(secret: bytes) -> list[bytes]:
    """The secret and the ways it could leak: hex, base64 at every alignment, PEM body."""
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for offset in range(3):
        chunk = secret[offset:]
        encoded = base64.b64encode(chunk)
        forms.append(encoded[4 : 4 + min(len(encoded) - 8, 40)] if len(encoded) > 12 else encoded)
    return [form for form in forms if len(form) >= 8]


def _windows(secret: bytes, size: int = 24) -> list[bytes]:
    """Windows from the middle of long key material (skip the shared ASN.1 header)."""
    if len(secret) <= 2 * size:
        return [secret]
    return [
        secret[i : i + size] for i in range(len(secret) // 3, len(secret) - size, len(secret) // 5)
    ]


def _database_bytes(url: str) -> bytes:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    metadata = MetaData()
    metadata.reflect(engine)
    dump = bytearray()
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for value in row:
                    dump += value if isinstance(value, bytes) else str(value).encode()
                    dump += b"\x00"
    engine.dispose()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                dump += Path(f"{path}{suffix}").read_bytes()
    return bytes(dump)


def test_full_run_leaves_no_secret_in_clear(installation: Installation, db_url: str) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    inst.ok("config", "check")
    inst.ok("config", "check", "--format", "json")
    inst.import_ca()
    inst.ok("ca", "show")
    inst.ok("ca", "show", "--format", "json")
    out = inst.root / "out"
    emails = ["alice@example.com", "bob@example.com"]
    for email in emails:
        inst.ok("cert", "issue", email, "--out", str(out))

    wrapping_key = (inst.root / "kacls.key").read_bytes()
    secrets: dict[str, bytes] = {
        "master key": (inst.root / "master.key").read_bytes(),
        "KACLS wrapping key": wrapping_key,
        "PKCS#12 password": P12_PASSWORD,
    }
    issuer_key = inst.hierarchy.intermediate_key
    secrets["issuer key (PKCS#8)"] = issuer_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for email in emails:
        wrapped = json.loads((out / f"{email}.wrap").read_text())["wrapped_private_key"]
        secrets[f"{email} key (PKCS#8)"] = unwrap_private_key(wrapped, wrapping_key)

    def leaks(content: bytes, secret: bytes) -> bool:
        return any(form in content for w in _windows(secret) for form in _encodings(w))

    for secret in secrets.values():  # the detector itself sees every way a secret could leak
        assert leaks(b"log: " + base64.b64encode(secret) + b"\n", secret)
        assert leaks(b"log: " + secret.hex().encode() + b"\n", secret)
        assert leaks(b"row" + secret + b"row", secret)

    places = {
        "database": _database_bytes(db_url),
        "command output and logs": "\n".join(inst.outputs).encode(),
    }
    for place, content in places.items():
        assert b"PRIVATE KEY" not in content, place
        for name, secret in secrets.items():
            assert not leaks(content, secret), f"{name} found in {place}"
