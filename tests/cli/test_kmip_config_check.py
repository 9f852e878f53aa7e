"""``syncd config check`` with ``kms.backend: kmip``: missing keys and missing, unreadable or
wrong files exit 2, each problem naming the configuration key and the file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from syncd.app.setup import check_configuration
from syncd.config import load_config

from .conftest import Installation


def _client_pair(folder: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
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


def _with_kmip(inst: Installation, **kmip: object) -> None:
    config = yaml.safe_load(inst.config_path.read_text())
    config["kms"]["backend"] = "kmip"
    config["kms"]["kmip"] = kmip
    inst.write_config(**config)


def _problems(inst: Installation) -> list[str]:
    """What ``config check`` reports of kms.*, run in this process (the exit codes are
    checked through the command below)."""
    found = check_configuration(load_config(inst.config_path))
    return [str(p) for p in found if str(p).startswith("kms.")]


def test_binary_settings_that_work_pass(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    cert, key = _client_pair(inst.root, "syncd-client")
    ca, _ = _client_pair(inst.root, "kmip-ca")
    _with_kmip(
        inst, host="kms.example.test", client_certificate_file=str(cert),
        client_key_file=str(key), ca_file=str(ca),
    )  # fmt: skip
    assert inst.syncd("config", "check").code == 0
    assert _problems(inst) == []
    document = json.loads(inst.ok("config", "check", "--format", "json"))["config"]
    assert document["valid"] is True


def test_binary_without_its_required_keys(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    _with_kmip(inst, transport="binary")
    result = inst.syncd("config", "check")
    assert result.code == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: kms.")]
    assert [p.split(":")[1].strip() for p in problems] == [
        "kms.kmip.host",
        "kms.kmip.client_certificate_file",
        "kms.kmip.client_key_file",
    ]


def test_missing_unreadable_and_wrong_files_name_key_and_file(
    sqlite_installation: Installation,
) -> None:
    inst = sqlite_installation
    cert, key = _client_pair(inst.root, "syncd-client")
    _, other_key = _client_pair(inst.root, "someone-else")
    missing = inst.root / "nowhere" / "client.crt"
    _with_kmip(inst, host="kms", client_certificate_file=str(missing), client_key_file=str(key))
    assert _problems(inst) == [f"kms.kmip.client_certificate_file: file not found: {missing}"]

    folder = inst.root / "a-folder.key"
    folder.mkdir()
    _with_kmip(inst, host="kms", client_certificate_file=str(cert), client_key_file=str(folder))
    assert _problems(inst) == [
        f"kms.kmip.client_key_file: cannot read {folder}: not a regular file"
    ]

    _with_kmip(inst, host="kms", client_certificate_file=str(cert), client_key_file=str(cert))
    assert _problems(inst) == [
        f"kms.kmip.client_key_file: {cert} holds no unencrypted PEM private key"
    ]

    _with_kmip(
        inst, host="kms", client_certificate_file=str(cert), client_key_file=str(other_key),
        ca_file=str(inst.root / "ca.pem"),
    )  # fmt: skip
    assert _problems(inst) == [
        f"kms.kmip.client_key_file: {other_key} is not the key of the client certificate {cert}",
        f"kms.kmip.ca_file: file not found: {inst.root / 'ca.pem'}",
    ]


def test_json_transport_url_and_token(sqlite_installation: Installation) -> None:
    inst = sqlite_installation
    _with_kmip(inst, transport="json")
    assert [p.split(":")[0] for p in _problems(inst)] == ["kms.kmip.url", "kms.kmip"]

    token = inst.root / "kms.token"
    _with_kmip(inst, transport="json", url="https://kms.example.test:9998", token_file=str(token))
    assert _problems(inst) == [f"kms.kmip.token_file: file not found: {token}"]
    token.write_text("secret-token\n")
    token.chmod(0o600)
    assert _problems(inst) == []
    result = inst.syncd("config", "check")
    assert result.code == 0 and "secret-token" not in result.stdout + result.stderr

    _with_kmip(
        inst, transport="json", url="https://kms.example.test:9998", token_env="SYNCD_TEST_NO_TOKEN"
    )
    assert _problems(inst) == [
        "kms.kmip.token_env: environment variable SYNCD_TEST_NO_TOKEN is not set"
    ]
