"""A ready sandbox for tests and benchmarks: a small company directory, a service account
key, a test CA hierarchy and leaf certificates to Google's profile.

Throwaway material only; nothing here is fit for production.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.config import GoogleConfig
from syncd.pki.chain import pkcs7_pem
from syncd.sandbox.seed import DEFAULT_DELEGATED_SCOPES, create_service_account, init_sandbox_data
from syncd.sandbox.server import SandboxServer
from syncd.sandbox.store import ACCOUNTS_FILE, atomic_write
from tests.support.testca import TestHierarchy
from tests.support.testcerts import LeafSpec, build_leaf

DOMAIN = "example.com"
ADMIN = f"admin@{DOMAIN}"
SERVICE_ACCOUNT = "syncd@syncd-test.iam.gserviceaccount.com"
KACLS_URI = "https://kacls.example.com/google_cse"


def sample_users(extra: int = 0) -> list[dict[str, Any]]:
    """alice, bob, carol (Sales), dave (suspended), erin (no mailbox), admin, and ``extra``
    plain users named user000@..."""
    users: list[dict[str, Any]] = [
        {
            "primaryEmail": f"alice@{DOMAIN}",
            "orgUnitPath": "/Sales",
            "name": {"givenName": "Alice", "familyName": "Archer"},
            "customSchemas": {"Employment": {"costCenter": "42", "cse": True}},
        },
        {"primaryEmail": f"bob@{DOMAIN}", "orgUnitPath": "/Engineering"},
        {
            "primaryEmail": f"carol@{DOMAIN}",
            "orgUnitPath": "/Sales/EMEA",
            "customSchemas": {"Employment": {"costCenter": "7"}},
        },
        {"primaryEmail": f"dave@{DOMAIN}", "suspended": True},
        {"primaryEmail": f"erin@{DOMAIN}", "isMailboxSetup": False},
        {"primaryEmail": ADMIN, "isAdmin": True},
    ]
    users += [{"primaryEmail": f"user{i:03d}@{DOMAIN}"} for i in range(extra)]
    return users


def sample_groups() -> list[dict[str, Any]]:
    """sales@ holds alice and the nested group emea@ (carol); all@ holds sales@ and bob."""
    return [
        {
            "email": f"sales@{DOMAIN}",
            "members": [{"email": f"alice@{DOMAIN}", "role": "OWNER"}, f"emea@{DOMAIN}"],
        },
        {"email": f"emea@{DOMAIN}", "members": [f"carol@{DOMAIN}"]},
        {"email": f"all@{DOMAIN}", "members": [f"sales@{DOMAIN}", f"bob@{DOMAIN}"]},
    ]


@cache
def _shared_leaf_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def leaf_pkcs7(
    hierarchy: TestHierarchy,
    email: str,
    *,
    include_intermediate: bool = True,
    **spec_changes: Any,
) -> str:
    """A PKCS#7 (PEM) of a fresh leaf for ``email`` and the intermediate that issued it.

    ``spec_changes`` override LeafSpec fields to break one rule. Leaves share one RSA key so
    tests stay fast; each leaf is still a distinct certificate.
    """
    spec = LeafSpec(email=email, public_key=_shared_leaf_key().public_key(), **spec_changes)
    leaf = build_leaf(spec, hierarchy.intermediate_cert, hierarchy.intermediate_key)
    chain = [leaf, hierarchy.intermediate_cert] if include_intermediate else [leaf]
    return pkcs7_pem(chain)


def root_signed_pkcs7(hierarchy: TestHierarchy, email: str) -> str:
    """A leaf issued directly by the root: Google refuses it (no intermediate)."""
    spec = LeafSpec(email=email, public_key=_shared_leaf_key().public_key())
    return pkcs7_pem([build_leaf(spec, hierarchy.root_cert, hierarchy.root_key)])


@cache
def _registered_account(client_email: str, scopes: tuple[str, ...]) -> tuple[bytes, str]:
    """The sandbox's service-account registry and the key file (JSON) of ``client_email``,
    made once per process by create_service_account in a folder of its own."""
    with tempfile.TemporaryDirectory(prefix="syncd-test-account-") as folder:
        key_info = create_service_account(Path(folder), client_email, "", scopes)
        return (Path(folder) / ACCOUNTS_FILE).read_bytes(), json.dumps(key_info)


def register_service_account(
    data_dir: Path,
    client_email: str,
    token_uri: str,
    scopes: tuple[str, ...] = DEFAULT_DELEGATED_SCOPES,
) -> dict[str, Any]:
    """What ``create_service_account(data_dir, client_email, token_uri, scopes)`` does for a
    sandbox with no service account yet (a key pair registered, its key file returned), with
    one key pair per account for the whole test process: generating an RSA key for every
    sandbox cost tenths of a second each on a loaded machine. A sandbox that already has an
    account gets a new key, as create_service_account gives it."""
    if (Path(data_dir) / ACCOUNTS_FILE).exists():
        return create_service_account(data_dir, client_email, token_uri, scopes)
    registry, key_file = _registered_account(client_email, tuple(scopes))
    atomic_write(Path(data_dir) / ACCOUNTS_FILE, registry, mode=0o600)
    key_info: dict[str, Any] = json.loads(key_file)
    key_info["token_uri"] = token_uri
    return key_info


@dataclass
class RunningSandbox:
    server: SandboxServer
    data_dir: Path
    key_info: dict[str, Any] = field(repr=False)
    hierarchy: TestHierarchy

    def google_config(self, **changes: Any) -> GoogleConfig:
        """A GoogleConfig pointing at this sandbox, the key given inline."""
        values: dict[str, Any] = {
            "service_account_key": json.dumps(self.key_info),
            "endpoint": self.server.url,
            "admin_subject": ADMIN,
            "requests_per_second": 1000.0,
        }
        values.update(changes)
        return GoogleConfig(**values)

    def admin(self, verb: str, name: str, body: dict[str, Any] | None = None) -> Any:
        """Call an admin endpoint (``faults``, ``clock``, ``stats``, ...) over HTTP."""
        data = json.dumps(body).encode() if body is not None else b"" if verb == "POST" else None
        request = urllib.request.Request(
            f"{self.server.url}sandbox/v1/{name}", data=data, method=verb
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def requests(self, method: str) -> int:
        """How many requests the sandbox received for a Google method name."""
        entry = self.admin("GET", "stats")["methods"].get(method, {})
        return int(entry.get("requests", 0))

    def stop(self) -> None:
        self.server.stop()


def start_sandbox(
    data_dir: Path,
    hierarchy: TestHierarchy,
    *,
    extra_users: int = 0,
    scopes: tuple[str, ...] = DEFAULT_DELEGATED_SCOPES,
) -> RunningSandbox:
    """Write the sample directory and the hierarchy's root, start a sandbox on a free port,
    register a service account; the caller stops it."""
    root_pem = hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
    init_sandbox_data(data_dir, DOMAIN, sample_users(extra_users), root_pem, groups=sample_groups())
    server = SandboxServer(data_dir).start()
    key_info = register_service_account(data_dir, SERVICE_ACCOUNT, server.token_uri, scopes)
    return RunningSandbox(server, data_dir, key_info, hierarchy)


def days_ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
