"""``syncd run`` with a KMS that cannot be reached: each pass stops at its KMS check, before
the run lock, with one line naming the KMS, and records nothing; the service keeps running."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from syncd.state.db import Database
from syncd.state.models import Run
from tests.conftest import _migrate

from .conftest import Deployment, RunningDaemon, free_port


@pytest.fixture
def migrated_db_url(tmp_path: Path) -> str:
    """SQLite only: these concern the KMS, not the state store (the pipeline's other tests
    run on both stores)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    return url


def _client_files(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "client.crt", folder / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_passes_stop_at_an_unreachable_kms_and_record_nothing(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    deploy = daemon_deployment
    cert, key = _client_files(deploy.root)
    port = free_port()
    deploy.update_config(
        kms={
            "backend": "kmip",
            "kmip": {
                "host": "127.0.0.1",
                "port": port,
                "client_certificate_file": str(cert),
                "client_key_file": str(key),
                "ca_file": str(cert),
                "timeout": 2,
            },
        }
    )
    daemon = start_daemon()
    daemon.wait_for_notification("READY=1")
    failed = f"pass failed: KMIP server 127.0.0.1:{port}: "
    daemon.wait_until(
        lambda: sum(failed in status for status in daemon.notify.statuses()) >= 2,
        "two passes stopped at the KMS check",
    )
    assert daemon.running()
    assert daemon.stop() == 0
    [status] = {s.split(": ", 1)[1] for s in daemon.notify.statuses() if failed in s}
    assert status.startswith(failed) and "connection refused" in status and "\n" not in status
    database = Database.open(deploy.config.state.url)
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
    database.close()
