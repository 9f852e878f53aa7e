"""``syncd kms test`` against the embedded backend: every operation proved on a throwaway key,
exit 1 with one line per failing operation, the throwaway key destroyed in every case.
(The same command against the PyKMIP server: tests/kmip/test_kms_test_kmip.py.)"""

from __future__ import annotations

import json
from typing import Any

import yaml
from sqlalchemy import select, update

from syncd.app.context import App
from syncd.config import load_config
from syncd.state.models import Issuer, KmsKey, KmsKeyState
from tests.support.testca import write_private_file

from .conftest import P12_PASSWORD, Installation


def _import_ca(inst: Installation) -> None:
    (inst.root / "ca").mkdir(exist_ok=True)
    write_private_file(inst.password_file, P12_PASSWORD)
    inst.import_ca()

OPERATIONS = ["connect", "create", "sign", "wrap", "unwrap", "issuer", "revoke", "destroy"]


def _run(inst: Installation) -> tuple[int, dict[str, Any], str]:
    result = inst.syncd("kms", "test", "--format", "json")
    return result.code, json.loads(result.stdout)["kms_test"], result.stderr


def _results(document: dict[str, Any]) -> dict[str, str]:
    return {row["operation"]: row["result"] for row in document["operations"]}


def _throwaway_keys(inst: Installation) -> list[tuple[KmsKeyState, bytes | None]]:
    app = App(load_config(inst.config_path))
    with app.database.sessions() as session:
        rows = session.execute(
            select(KmsKey.state, KmsKey.sealed_private_key).where(
                KmsKey.label.like("syncd-kms-test:%")
            )
        ).all()
    app.database.close()
    return [(row.state, row.sealed_private_key) for row in rows]


def test_every_operation_passes_and_the_table_says_how(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    _import_ca(inst)
    code, document, stderr = _run(inst)
    assert code == 0, stderr
    assert document["ok"] is True and document["backend"] == "local"
    assert document["wrapping"] == "client"
    assert _results(document) == dict.fromkeys(OPERATIONS, "ok")
    detail = {row["operation"]: row["detail"] for row in document["operations"]}
    assert detail["wrap"].startswith("client-side (kacls.wrapping_key), pkcs1")
    assert "with the KACLS key: pkcs1" in detail["unwrap"]
    assert "issuer 'test'" in detail["issuer"] and "verified with the issuer certificate" in (
        detail["issuer"]
    )
    assert all(isinstance(row["milliseconds"], int) for row in document["operations"])
    assert _throwaway_keys(inst) == [(KmsKeyState.DESTROYED, None)]

    table = inst.syncd("kms", "test")
    assert table.code == 0 and table.stderr == ""
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["operation", "result", "ms", "detail"]
    assert [line.split()[0] for line in lines[3:11]] == OPERATIONS
    assert lines[-1] == (
        "kaclsData: client-side (kacls.wrapping_key); certificates: Sign over the to-be-signed "
        "bytes"
    )


def test_a_failing_operation_exits_1_naming_it_and_still_destroys_the_key(
    sqlite_installation: Installation,
) -> None:
    inst = sqlite_installation
    config = yaml.safe_load(inst.config_path.read_text())
    del config["kacls"]["wrapping_key_file"]
    inst.write_config(**config)
    code, document, stderr = _run(inst)
    assert code == 1 and document["ok"] is False
    assert _results(document) == {
        "connect": "ok",
        "create": "ok",
        "sign": "ok",
        "wrap": "failed",
        "unwrap": "skipped",
        "issuer": "skipped",
        "revoke": "ok",
        "destroy": "ok",
    }
    assert stderr.splitlines() == [
        "syncd: kms test: wrap: kacls.wrapping_key_file: required to wrap private keys for the "
        "KACLS"
    ]
    assert _throwaway_keys(inst) == [(KmsKeyState.DESTROYED, None)]


def test_an_unknown_issuer_key_fails_the_issuer_row(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    _import_ca(inst)
    app = App(load_config(inst.config_path))
    with app.database.transaction() as session:
        session.execute(update(Issuer).values(kms_private_key_id="gone"))
    app.database.close()
    code, document, stderr = _run(inst)
    assert code == 1
    assert [r for r, result in _results(document).items() if result != "ok"] == ["issuer"]
    assert stderr.splitlines() == ["syncd: kms test: issuer: no key gone in the local KMS"]
    assert _throwaway_keys(inst) == [(KmsKeyState.DESTROYED, None)]
