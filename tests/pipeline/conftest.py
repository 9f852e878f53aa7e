"""A whole deployment for pipeline tests: test CA, sandbox over HTTP, state store (SQLite and
PostgreSQL), static directory file and a configuration tying them together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from syncd.app.context import App
from syncd.config import Config, load_config
from syncd.credentials.issuers import import_issuer
from syncd.google.gmail import GmailCSE
from syncd.kms.local import create_master_key
from syncd.sandbox import SandboxServer, init_sandbox_data
from syncd.state.db import Database
from syncd.state.models import KmsKey
from tests.conftest import PostgresServer, _migrate
from tests.kmip.server import PyKmipServer, start_pykmip_server
from tests.support.cli import run_syncd
from tests.support.sandbox import register_service_account
from tests.support.testca import TestHierarchy, make_test_hierarchy, write_private_file

DOMAIN = "example.com"
P12_PASSWORD = b"pipeline-test"
LONG_USER = "first.middle.lastname.department" + ".x" * 12 + f"@subsidiary.{DOMAIN}"
"""A mailbox whose address is longer than a common name may be (64 characters)."""


@pytest.fixture(scope="session")
def pipeline_ca(tmp_path_factory: pytest.TempPathFactory) -> TestHierarchy:
    return make_test_hierarchy(
        tmp_path_factory.mktemp("pipeline-ca"), password=P12_PASSWORD, organization="Pipeline Test"
    )


@dataclass
class Deployment:
    root: Path
    config_path: Path
    users_file: Path
    sandbox: SandboxServer
    hierarchy: TestHierarchy

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    def app(self) -> App:
        return App(self.config)

    def gmail(self) -> GmailCSE:
        return GmailCSE(self.config.google)

    def set_users(self, emails: list[str], disabled: tuple[str, ...] = ()) -> None:
        users = [{"email": e, "id": f"id-{e}", "enabled": e not in disabled} for e in emails]
        self.users_file.write_text(yaml.safe_dump({"users": users}))

    def update_config(self, **changes: dict[str, Any]) -> None:
        data = yaml.safe_load(self.config_path.read_text())
        for section, values in changes.items():
            data.setdefault(section, {}).update(values)
        self.config_path.write_text(yaml.safe_dump(data))

    def syncd(
        self, *args: str, crash_at: str | None = None, process: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``syncd --config CONFIG ARGS``, run in this process (tests.support.cli) unless it
        needs one of its own: ``crash_at`` (it kills itself there), or ``process`` (a pass
        that ends without releasing its claims: they name its pid, and only a pid that is
        gone lets the next pass take them at once)."""
        env = {k: v for k, v in os.environ.items() if k != "SYNCD_CRASH_AT"}
        if not crash_at and not process:
            return run_syncd(["--config", str(self.config_path), *args], env=env)
        if crash_at:
            env["SYNCD_CRASH_AT"] = crash_at
        return subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    def admin(self, verb: str, name: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.request

        data = json.dumps(body).encode() if body is not None else (b"" if verb == "POST" else None)
        request = urllib.request.Request(
            f"{self.sandbox.url}sandbox/v1/{name}", data=data, method=verb
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def writes(self) -> dict[str, int]:
        """Google write requests the sandbox has received, by method."""
        methods = self.admin("GET", "stats")["methods"]
        return {
            name: entry.get("requests", 0)
            for name, entry in methods.items()
            if not name.endswith((".list", ".get")) and name.startswith(_CSE_WRITES)
        }

    def kms_key_count(self) -> int:
        database = Database.open(self.config.state.url)
        with database.sessions() as session:
            count = session.scalar(select(func.count()).select_from(KmsKey))
        database.close()
        return int(count or 0)


_CSE_WRITES = ("gmail.users.settings.cse.keypairs.", "gmail.users.settings.cse.identities.")
"""The sandbox's names of the Gmail CSE methods (writes are those other than list and get)."""


def sandbox_users(count: int) -> list[str]:
    return [f"user{i:02d}@{DOMAIN}" for i in range(count)]


def build_deployment(
    tmp_path: Path, state_url: str, ca: TestHierarchy, kms: dict[str, Any] | None = None
) -> Deployment:
    """Forty sandbox users (the sandbox started: stop it), the static directory listing the
    first six, and a configuration with ``kms`` (default: the embedded store); no issuer yet."""
    data_dir = tmp_path / "sandbox"
    root_pem = ca.root_cert.public_bytes(serialization.Encoding.PEM)
    everyone = [*sandbox_users(40), f"admin@{DOMAIN}", LONG_USER]
    init_sandbox_data(data_dir, DOMAIN, everyone, root_pem)
    server = SandboxServer(data_dir).start()
    key_info = register_service_account(
        data_dir, "syncd@pipeline-test.iam.gserviceaccount.com", server.token_uri
    )
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(key_info))
    key_file.chmod(0o600)
    if kms is None:
        master = tmp_path / "master.key"
        create_master_key(master)
        kms = {"local": {"master_key_file": str(master)}}
    kacls = tmp_path / "kacls.key"
    kacls.write_bytes(os.urandom(32))
    kacls.chmod(0o600)
    users_file = tmp_path / "users.yaml"
    config = {
        "state": {"url": state_url},
        "directory": {"source": "static", "static": {"path": str(users_file)}},
        "kms": kms,
        "kacls": {"uri": "https://kacls.example.com/google_cse", "wrapping_key_file": str(kacls)},
        "ca": {"label": "pipeline"},
        "certificate": {"key_bits": 2048, "validity_days": 365},
        "google": {
            "service_account_key_file": str(key_file),
            "endpoint": server.url,
            "requests_per_second": 500,
        },
        "pipeline": {"workers": 3, "step_attempts": 4, "retry_initial": "1s"},
        "policy": {"max_deprovision": "40%"},
    }
    config_path = tmp_path / "syncd.yaml"
    config_path.write_text(yaml.safe_dump(config))
    deploy = Deployment(tmp_path, config_path, users_file, server, ca)
    deploy.set_users(sandbox_users(6))
    return deploy


def import_pipeline_issuer(deploy: Deployment, pipeline_ca: TestHierarchy) -> None:
    """``syncd ca import`` of the pipeline tests' issuing CA into the deployment's KMS."""
    app = deploy.app()
    assert pipeline_ca.issuer_p12 is not None and pipeline_ca.root_pem is not None
    import_issuer(
        app.database.sessions,
        app.key_manager(),
        label="pipeline",
        pkcs12_data=pipeline_ca.issuer_p12.read_bytes(),
        password=P12_PASSWORD,
        extra_chain_pem=pipeline_ca.root_pem.read_bytes(),
        now=datetime.now(UTC),
        where="issuer.p12",
    )
    app.database.close()


@pytest.fixture
def deployment(
    tmp_path: Path, migrated_db_url: str, pipeline_ca: TestHierarchy
) -> Iterator[Deployment]:
    """Forty sandbox users; the static directory lists the first six; the embedded KMS holds
    the issuer."""
    deploy = build_deployment(tmp_path, migrated_db_url, pipeline_ca)
    try:
        import_pipeline_issuer(deploy, pipeline_ca)
        yield deploy
    finally:
        deploy.sandbox.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer, _postgres_migrated_template: str) -> Iterator[str]:
    name = postgres_server.create_database(template=_postgres_migrated_template)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def shared(tmp_path: Path, pg_url: str, pipeline_ca: TestHierarchy) -> Iterator[Deployment]:
    """A deployment on PostgreSQL with ``state.shared`` and short claims and polls."""
    deploy = build_deployment(tmp_path, pg_url, pipeline_ca)
    try:
        import_pipeline_issuer(deploy, pipeline_ca)
        deploy.update_config(
            state={"shared": True},
            pipeline={"workers": 2, "claim_timeout": "20s", "poll_interval": "0.3s"},
            schedule={"interval": "1h", "jitter": "0.1s"},
            daemon={"stop_timeout": "60s"},
            logging={"level": "INFO"},
        )
        yield deploy
    finally:
        deploy.sandbox.stop()


@pytest.fixture
def kmip_server(tmp_path: Path) -> Iterator[PyKmipServer]:
    """A PyKMIP server of this test's own (about 1 s to start): everything it holds was made
    by the test, so the test can account for every object in it."""
    server = start_pykmip_server(tmp_path / "pykmip")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kmip_deployment(
    tmp_path: Path, pipeline_ca: TestHierarchy, kmip_server: PyKmipServer
) -> Iterator[Deployment]:
    """The deployment with ``kms.backend: kmip`` against ``kmip_server`` (binary transport,
    ``server_side_wrap: auto``: PyKMIP cannot wrap with AES-GCM, so syncd wraps client-side
    with ``kacls.wrapping_key_file``), the issuer put into the KMS by ``syncd ca import`` of
    the test CA's PKCS#12. SQLite only: the store's two engines are covered with the embedded
    KMS; these tests are about the KMS."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _migrate(url)
    files = kmip_server.client
    kms = {
        "backend": "kmip",
        "kmip": kmip_server.kmip_section(
            files, transport="binary", timeout=10, server_side_wrap="auto"
        ),
    }
    deploy = build_deployment(tmp_path, url, pipeline_ca, kms)
    try:
        hierarchy = pipeline_ca
        assert hierarchy.issuer_p12 is not None and hierarchy.root_pem is not None
        password = tmp_path / "issuer.pass"
        write_private_file(password, P12_PASSWORD)
        imported = deploy.syncd(
            "ca", "import", str(hierarchy.issuer_p12), "--password-file", str(password),
            "--chain", str(hierarchy.root_pem),
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        yield deploy
    finally:
        deploy.sandbox.stop()


def gmail_state(
    deploy: Deployment, email: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(key pairs, identity or None) of one user as the sandbox holds them."""
    from syncd.google.errors import GoogleAPIError

    gmail = deploy.gmail()
    keypairs = gmail.list_keypairs(email)
    try:
        identity = gmail.get_identity(email)
    except GoogleAPIError as error:
        if error.status != 404:
            raise
        identity = None
    return keypairs, identity
