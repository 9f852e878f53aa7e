"""Acceptance with ``kms.backend: kmip``: the issuer imported into a real PyKMIP server with
``syncd ca import``, then ``syncd sync --once`` provisions users end to end through the Gmail
sandbox. Judged without syncd's code: the state store's own dump (KMS ids only, no key
material), PyKMIP's own client (what the server holds), ``openssl verify -purpose smimesign``
of every certificate Gmail received, and every kaclsData Gmail received unwrapped with the
KACLS key (AES-GCM) to DER whose modulus ``openssl rsa`` and ``openssl x509`` agree on.

PyKMIP cannot wrap with AES-GCM, so ``server_side_wrap: auto`` falls back to client-side
wrapping with ``kacls.wrapping_key_file`` here; the server-side path is covered by the JSON
transport's fixtures."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from syncd.app.context import App
from syncd.app.passes import sync_pass
from syncd.errors import KMSUnavailableError
from syncd.kms.kmip.binary import BinaryTransport
from syncd.kms.kmip.transport import KmipPair
from tests.kmip.inventory import by_name, held_objects
from tests.kmip.server import PyKmipServer

from .conftest import Deployment, gmail_state, sandbox_users

USERS = sandbox_users(5)


def _openssl(*args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout.decode().strip()


def _state_dump(deploy: Deployment) -> tuple[str, bytes, sqlite3.Connection]:
    path = Path(deploy.config.state.url.removeprefix("sqlite:///"))
    db = sqlite3.connect(path)
    return "\n".join(db.iterdump()), path.read_bytes(), db


def test_sync_once_with_every_key_in_the_kms(
    kmip_deployment: Deployment, kmip_server: PyKmipServer
) -> None:
    deploy = kmip_deployment
    deploy.set_users(USERS)
    locates_before = kmip_server.log().count("Processing operation: Locate")
    done = deploy.syncd("sync", "--once")
    assert done.returncode == 0, done.stderr
    assert f"{len(USERS)} done, 0 failed" in done.stdout
    # New key pair generations cannot be in the KMS yet: no Locate by label for each (PyKMIP's
    # Locate scans every object it holds); the pass's KMS check may locate the issuer's pair
    # (its two names).
    assert kmip_server.log().count("Processing operation: Locate") - locates_before <= 2

    kacls_key_file = deploy.config.kacls.wrapping_key.file
    assert kacls_key_file is not None
    kacls_key = kacls_key_file.read_bytes()
    root, intermediate = deploy.hierarchy.root_pem, deploy.hierarchy.intermediate_pem
    assert root is not None and intermediate is not None
    dump, db_file, db = _state_dump(deploy)
    held = held_objects(kmip_server)
    private_keys = by_name(held, "private_key")
    public_keys = by_name(held, "public_key")

    # The store holds KMS ids only: the embedded key table is empty, no PEM private key.
    assert db.execute("select count(*) from kms_keys").fetchone() == (0,)
    assert "PRIVATE KEY" not in dump
    [(issuer_key_id, issuer_backend)] = db.execute(
        "select kms_private_key_id, kms_backend from issuers"
    ).fetchall()
    assert issuer_backend == "kmip"
    assert [obj.uid for obj in private_keys["issuer:pipeline"]] == [issuer_key_id]
    rows = db.execute(
        "select u.email, k.kms_label, k.kms_private_key_id, k.kms_public_key_id, k.kms_backend"
        " from key_pairs k join users u on u.id = k.user_id order by u.email"
    ).fetchall()
    db.close()
    assert [row[0] for row in rows] == USERS  # one generation each
    # Every user key pair is in the KMS, once, under the label the store recorded, active.
    user_private = {name: objs for name, objs in private_keys.items() if name.startswith("syncd:")}
    assert len(user_private) == len(USERS)
    for _email, label, private_id, public_id, backend in rows:
        assert backend == "kmip"
        assert [(o.uid, o.state) for o in user_private[label]] == [(private_id, "active")]
        assert [o.uid for o in public_keys[f"{label}.pub"]] == [public_id]  # syncd's naming

    for email in USERS:
        keypairs, identity = gmail_state(deploy, email)
        assert len(keypairs) == 1, email
        assert identity is not None and identity["primaryKeyPairId"] == keypairs[0]["keyPairId"]
        certificates = x509.load_pem_x509_certificates(keypairs[0]["pem"].encode())
        issuing = deploy.hierarchy.intermediate_cert.subject
        [leaf] = [c for c in certificates if c.subject != issuing]
        leaf_file = deploy.root / f"{email}.pem"
        leaf_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        verified = _openssl(
            "verify", "-purpose", "smimesign", "-CAfile", str(root),
            "-untrusted", str(intermediate), str(leaf_file),
        )  # fmt: skip
        assert verified == f"{leaf_file}: OK"

        # kaclsData as Gmail received it, unwrapped as the KACLS does (AES-256-GCM).
        [metadata] = keypairs[0]["privateKeyMetadata"]
        sealed = base64.b64decode(metadata["kaclsKeyMetadata"]["kaclsData"], validate=True)
        der = AESGCM(kacls_key).decrypt(sealed[:12], sealed[12:], None)
        key_modulus = _openssl("rsa", "-inform", "DER", "-noout", "-modulus", stdin=der)
        leaf_modulus = _openssl("x509", "-noout", "-modulus", "-in", str(leaf_file))
        assert key_modulus.startswith("Modulus=") and key_modulus == leaf_modulus, email
        # The private key is nowhere in the store, in any encoding.
        assert der not in db_file
        assert base64.b64encode(der)[:64].decode() not in dump
        assert der.hex()[:64] not in dump.lower()


def test_a_key_whose_answer_was_lost_is_found_by_the_retry(
    kmip_deployment: Deployment, kmip_server: PyKmipServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new generation skips the Locate before its first CreateKeyPair; an attempt that made
    the key in the KMS but whose answer never came back must make the retry look for it."""
    create = BinaryTransport.create_key_pair
    lost: list[str] = []

    def answer_lost(transport: BinaryTransport, label: str, bits: int) -> KmipPair:
        pair = create(transport, label, bits)  # made in the KMS...
        if not lost:  # ...but the first answer never reaches syncd
            lost.append(label)
            raise KMSUnavailableError(f"{transport.describe()}: CreateKeyPair {label!r}: reset")
        return pair

    monkeypatch.setattr(BinaryTransport, "create_key_pair", answer_lost)
    users = sandbox_users(3)
    kmip_deployment.set_users(users)
    result = sync_pass(App(kmip_deployment.config))
    assert result.clean, [r.error for r in result.failures]
    assert len(lost) == 1

    private_keys = by_name(held_objects(kmip_server), "private_key")
    user_labels = [name for name in private_keys if name.startswith("syncd:")]
    assert len(user_labels) == len(users)
    assert len(private_keys[lost[0]]) == 1, f"{lost[0]}: created twice"
    for email in users:
        keypairs, identity = gmail_state(kmip_deployment, email)
        assert len(keypairs) == 1 and identity is not None
