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

from syncd.app import App
from syncd.config import Config, load_config
from syncd.google.gmail import GmailCSE
from syncd.issuers import import_issuer
from syncd.kms.local import create_master_key
from syncd.pki.testca import TestHierarchy, make_test_hierarchy
from syncd.sandbox import SandboxServer, create_service_account, init_sandbox_data
from syncd.state.db import Database
from syncd.state.models import KmsKey

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

    def syncd(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "SYNCD_CRASH_AT"}
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


@pytest.fixture
def deployment(
    tmp_path: Path, migrated_db_url: str, pipeline_ca: TestHierarchy
) -> Iterator[Deployment]:
    """Forty sandbox users; the static directory lists the first six."""
    data_dir = tmp_path / "sandbox"
    root_pem = pipeline_ca.root_cert.public_bytes(serialization.Encoding.PEM)
    everyone = [*sandbox_users(40), f"admin@{DOMAIN}", LONG_USER]
    init_sandbox_data(data_dir, DOMAIN, everyone, root_pem)
    server = SandboxServer(data_dir).start()
    key_info = create_service_account(
        data_dir, "syncd@pipeline-test.iam.gserviceaccount.com", server.token_uri
    )
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(key_info))
    key_file.chmod(0o600)
    master = tmp_path / "master.key"
    create_master_key(master)
    kacls = tmp_path / "kacls.key"
    kacls.write_bytes(os.urandom(32))
    kacls.chmod(0o600)
    users_file = tmp_path / "users.yaml"
    config = {
        "state": {"url": migrated_db_url},
        "directory": {"source": "static", "static": {"path": str(users_file)}},
        "kms": {"local": {"master_key_file": str(master)}},
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
    deploy = Deployment(tmp_path, config_path, users_file, server, pipeline_ca)
    deploy.set_users(sandbox_users(6))

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
    yield deploy
    server.stop()


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
