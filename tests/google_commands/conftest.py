"""The pipeline tests' deployment (test CA, sandbox over HTTP, state store on SQLite and
PostgreSQL, configuration) reused for the ``syncd google ...`` commands, and small helpers to
run them through the real ``syncd`` executable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from syncd.state.db import Database
from syncd.state.models import KmsKey
from tests.support.testca import CAKey, new_key, write_private_file
from tests.support.testcerts import LeafSpec, build_leaf

from ..pipeline.conftest import DOMAIN, Deployment, deployment, gmail_state, pipeline_ca

__all__ = [
    "DOMAIN",
    "Deployment",
    "audit_events",
    "deployment",
    "error_line",
    "gmail_state",
    "make_leaf",
    "manual_kms_keys",
    "ok",
    "ok_json",
    "pipeline_ca",
    "write_pkcs12",
]

P12_PASSWORD = b"leaf pkcs12 password"


def ok(deploy: Deployment, *args: str) -> str:
    result = deploy.syncd(*args)
    assert result.returncode == 0, f"syncd {' '.join(args)} exited {result.returncode}: " + (
        result.stderr
    )
    return result.stdout


def ok_json(deploy: Deployment, *args: str) -> Any:
    return json.loads(ok(deploy, *args, "--format", "json"))


def error_line(deploy: Deployment, code: int, *args: str) -> str:
    """Run a command that must fail with ``code``; its one stderr line, ``syncd: `` removed."""
    result = deploy.syncd(*args)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("syncd: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0].removeprefix("syncd: ")


def audit_events(deploy: Deployment, user: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = ok_json(deploy, "history", "--user", user)["events"]
    return events


def manual_kms_keys(deploy: Deployment, user: str) -> list[str]:
    """States of the KMS keys the google commands made for ``user``, oldest first."""
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            states = session.scalars(
                select(KmsKey.state)
                .where(KmsKey.label.startswith(f"manual:{user}:"))
                .order_by(KmsKey.created_at)
            )
            return [str(state) for state in states]
    finally:
        database.close()


def make_leaf(
    deploy: Deployment, email: str, key: CAKey | None = None
) -> tuple[CAKey, x509.Certificate]:
    """A key and a leaf for ``email`` issued by the deployment's intermediate, made now."""
    key = key or new_key("rsa")
    hierarchy = deploy.hierarchy
    leaf = build_leaf(
        LeafSpec(email, key.public_key()), hierarchy.intermediate_cert, hierarchy.intermediate_key
    )
    return key, leaf


def write_pkcs12(
    folder: Path,
    name: str,
    key: CAKey,
    leaf: x509.Certificate | None,
    others: list[x509.Certificate],
) -> tuple[Path, Path]:
    """A password-protected PKCS#12 file and its password file (both mode 0600)."""
    bundle = pkcs12.serialize_key_and_certificates(
        name.encode(), key, leaf, others, serialization.BestAvailableEncryption(P12_PASSWORD)
    )
    p12 = folder / f"{name}.p12"
    password = folder / f"{name}.pass"
    write_private_file(p12, bundle)
    write_private_file(password, P12_PASSWORD + b"\n")
    return p12, password
