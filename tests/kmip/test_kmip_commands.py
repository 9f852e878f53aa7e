"""The commands against the real PyKMIP server (``kms.backend: kmip``, binary transport):
``syncd kms test``, the pass's KMS check, and ``syncd ca import --kms-private-key-id``
(adopting an issuer key already in the KMS; the PKCS#12 import is in test_kmip_cli.py).

Bad settings (a wrong port, a server certificate from another CA, a client certificate the
server refuses, an unknown issuer key) exit 1 from ``kms test`` and from a pass, with one line
naming the cause, and the pass writes nothing. What the server holds is checked with PyKMIP's
own client, not through syncd.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from kmip.core import enums
from kmip.pie import objects as pie_objects
from kmip.pie.client import ProxyKmipClient
from kmip.pie.exceptions import KmipOperationFailure
from sqlalchemy import create_engine, func, select, update

from syncd.state.models import Base, Issuer, RunLockState
from tests.cli.test_cert_issue_pkcs1 import assert_pkcs1_of_leaf
from tests.kmip.server import ClientFiles, PyKmipServer
from tests.support.cli import run_syncd
from tests.support.testca import TestHierarchy, make_test_hierarchy, write_private_file

P12_PASSWORD = b"kmip commands"
OPERATIONS = ["connect", "create", "sign", "wrap", "unwrap", "issuer", "revoke", "destroy"]


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> TestHierarchy:
    folder = tmp_path_factory.mktemp("kmip-ca")
    write_private_file(folder / "issuer.pass", P12_PASSWORD)
    return make_test_hierarchy(folder, password=P12_PASSWORD, organization="KMIP Commands")


def pykmip_client(server: PyKmipServer) -> ProxyKmipClient:
    """PyKMIP's own client, as the accepted client: what the server really holds."""
    return ProxyKmipClient(
        hostname=server.host,
        port=server.port,
        cert=str(server.client.certificate),
        key=str(server.client.key),
        ca=str(server.client.ca),
        config_file="/dev/null",
    )


@dataclass
class KmipInstall:
    root: Path
    server: PyKmipServer
    hierarchy: TestHierarchy
    kacls_key: bytes

    @property
    def config_path(self) -> Path:
        return self.root / "syncd.yaml"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'state.db'}"

    def configure(self, files: ClientFiles | None = None, **kmip: Any) -> None:
        section = self.server.kmip_section(files, **{"timeout": 5, **kmip})
        users = self.root / "users.yaml"
        users.write_text(yaml.safe_dump({"users": [{"email": "ann@example.com", "id": "1"}]}))
        config = {
            "state": {"url": self.db_url},
            "directory": {"source": "static", "static": {"path": str(users)}},
            "kms": {"backend": "kmip", "kmip": section},
            "kacls": {
                "uri": "https://kacls.example.test/google_cse",
                "wrapping_key_file": str(self.root / "kacls.key"),
            },
            "ca": {"label": "test"},
            "certificate": {
                "key_bits": 2048,
                "crl_distribution_points": ["http://crl.example.test/issuing.crl"],
            },
        }
        self.config_path.write_text(yaml.safe_dump(config))

    def syncd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_syncd(["--config", str(self.config_path), *args])

    def ok(self, *args: str) -> str:
        done = self.syncd(*args)
        assert done.returncode == 0, f"syncd {' '.join(args)}: {done.stderr}"
        return done.stdout

    def import_ca(self) -> None:
        h = self.hierarchy
        assert h.issuer_p12 is not None and h.root_pem is not None
        self.ok(
            "ca", "import", str(h.issuer_p12), "--password-file",
            str(h.issuer_p12.parent / "issuer.pass"), "--chain", str(h.root_pem),
        )  # fmt: skip

    def issuer_key_id(self) -> str:
        document = json.loads(self.ok("ca", "show", "--format", "json"))
        [issuer] = document["issuers"]
        assert issuer["kms_backend"] == "kmip"
        return str(issuer["kms_private_key_id"])

    def row_counts(self) -> dict[str, int]:
        """Rows per table, and the run lock's fencing token (taken: incremented)."""
        engine = create_engine(self.db_url)
        with engine.connect() as connection:
            counts = {
                name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
                for name, table in Base.metadata.tables.items()
            }
            counts["run_lock.token"] = int(
                connection.scalar(select(func.coalesce(func.max(RunLockState.token), 0))) or 0
            )
        engine.dispose()
        return counts


@pytest.fixture
def install(
    tmp_path: Path, pykmip_server: PyKmipServer, hierarchy: TestHierarchy
) -> Iterator[KmipInstall]:
    kacls_key = os.urandom(32)
    write_private_file(tmp_path / "kacls.key", kacls_key)
    inst = KmipInstall(tmp_path, pykmip_server, hierarchy, kacls_key)
    inst.configure()
    inst.ok("db", "upgrade")
    yield inst


def _kms_test(inst: KmipInstall) -> tuple[int, dict[str, Any], list[str]]:
    done = inst.syncd("kms", "test", "--format", "json")
    return done.returncode, json.loads(done.stdout)["kms_test"], done.stderr.splitlines()


def test_kms_test_proves_every_operation_and_destroys_its_key(install: KmipInstall) -> None:
    install.import_ca()
    code, document, stderr = _kms_test(install)
    assert code == 0, stderr
    rows = {row["operation"]: row for row in document["operations"]}
    assert list(rows) == OPERATIONS
    assert {name: row["result"] for name, row in rows.items()} == dict.fromkeys(OPERATIONS, "ok")
    server = install.server
    assert document["kms"] == f"KMIP server {server.host}:{server.port}"
    # PyKMIP cannot wrap with AES-GCM: kaclsData is made client-side, and the probe unwrapped it.
    assert document["wrapping"] == "client"
    assert rows["wrap"]["detail"].startswith("client-side (kacls.wrapping_key), pkcs1")
    assert "verified with the issuer certificate" in rows["issuer"]["detail"]
    # The throwaway key pair is gone from the server (asked of PyKMIP's own client).
    key_id = rows["create"]["detail"].split()[4]
    public_id = rows["create"]["detail"].split("(public ")[1].rstrip(")")
    with pykmip_client(server) as client:
        for uid in (key_id, public_id):
            with pytest.raises(KmipOperationFailure):
                client.get(uid)


@pytest.mark.parametrize("cause", ["wrong port", "other CA", "refused client", "unknown issuer"])
def test_bad_settings_exit_1_from_kms_test_and_from_a_pass(
    install: KmipInstall, cause: str
) -> None:
    server = install.server
    install.import_ca()
    expected = {
        "wrong port": "connection refused",
        "other CA": "certificate",
        "refused client": "refused",
        "unknown issuer": "999999",
    }[cause]
    if cause == "wrong port":
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        install.configure(port=free)
    elif cause == "other CA":
        install.configure(ca_file=str(server.other_ca))
    elif cause == "refused client":
        install.configure(files=server.stranger)
    else:
        engine = create_engine(install.db_url)
        with engine.begin() as connection:
            connection.execute(update(Issuer).values(kms_private_key_id="999999"))
        engine.dispose()

    code, document, stderr = _kms_test(install)
    assert code == 1
    failed = [row for row in document["operations"] if row["result"] == "failed"]
    assert len(failed) == 1 and len(stderr) == 1
    assert failed[0]["operation"] == ("issuer" if cause == "unknown issuer" else "connect")
    assert stderr[0].startswith(f"syncd: kms test: {failed[0]['operation']}: ")
    assert expected in stderr[0].lower(), stderr[0]
    assert f"{server.host}:" in stderr[0]

    before = install.row_counts()
    commands = [("sync", "--once")] + ([("resync", "--all")] if cause == "unknown issuer" else [])
    for command in commands:
        done = install.syncd(*command)
        assert done.returncode == 1, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("syncd: ") and expected in line.lower(), line
        assert install.row_counts() == before  # no run, no user, no task, no lock token


def test_ca_import_adopts_an_issuer_already_in_the_kms(install: KmipInstall) -> None:
    """The issuer key registered with another tool (PyKMIP's client, standing for Cosmian's
    CLI); syncd adopts it by id, refuses a key matching no certificate of the chain."""
    h = install.hierarchy
    key = h.intermediate_key
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pykmip_client(install.server) as client:
        uid = client.register(
            pie_objects.PrivateKey(
                enums.CryptographicAlgorithm.RSA, key.key_size, pkcs8,
                enums.KeyFormatType.PKCS_8,
                masks=[enums.CryptographicUsageMask.SIGN],
                name="issuer from the KMS tool",
            )
        )  # fmt: skip
        client.activate(uid)
    chain = install.root / "chain.pem"
    chain.write_bytes(
        b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (h.root_cert, h.intermediate_cert)
        )
    )
    wrong = install.root / "root-only.pem"
    wrong.write_bytes(h.root_cert.public_bytes(serialization.Encoding.PEM))
    refused = install.syncd("ca", "import", "--kms-private-key-id", uid, "--chain", str(wrong))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"syncd: --chain {wrong}: no certificate in it holds the public key of the kmip KMS key "
        f"{uid}; give the issuer certificate of that key (and its chain)"
    ]
    out = install.ok("ca", "import", "--kms-private-key-id", uid, "--chain", str(chain))
    assert f"key {uid} in the kmip KMS" in out
    assert install.issuer_key_id() == uid
    # The adopted key signs certificates inside the KMS; the kaclsData is PKCS#1.
    out_dir = install.root / "out"
    install.ok("cert", "issue", "ann@example.com", "--out", str(out_dir))
    assert_pkcs1_of_leaf(out_dir, "ann@example.com", install.kacls_key)
    code, document, stderr = _kms_test(install)  # no public key object: the issuer still signs
    assert code == 0 and document["ok"], stderr


def test_kms_test_failing_wrap_still_destroys_the_key(install: KmipInstall) -> None:
    """PyKMIP cannot wrap with AES-GCM: with server_side_wrap always, wrap fails (one line),
    unwrap is skipped, and the throwaway key is still revoked and destroyed on the server."""
    install.configure(server_side_wrap="always")
    code, document, stderr = _kms_test(install)
    assert code == 1
    results = {row["operation"]: row["result"] for row in document["operations"]}
    assert results == {
        "connect": "ok", "create": "ok", "sign": "ok", "wrap": "failed", "unwrap": "skipped",
        "issuer": "skipped", "revoke": "ok", "destroy": "ok",
    }  # fmt: skip
    [line] = stderr
    assert line.startswith(f"syncd: kms test: wrap: KMIP server {install.server.host}:")
    assert "server_side_wrap is always" in line
    create = next(row for row in document["operations"] if row["operation"] == "create")
    with pykmip_client(install.server) as client, pytest.raises(KmipOperationFailure):
        client.get(create["detail"].split()[4])
