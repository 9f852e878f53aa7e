"""What ``kms.backend: kmip`` needs before syncd can connect (``syncd config check``): the
required keys of its transport, and the files they name, read and parsed as a connection
would (client certificate and key, CA certificates, token). Each problem is one ConfigError
naming the configuration key and the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncd.config import Config, KmipConfig, read_private_file, read_secret
from syncd.errors import ConfigError
from syncd.pki.pkcs12 import key_matches_certificate

WHERE = "kms.kmip"


def _required(kmip: KmipConfig) -> list[ConfigError]:
    """The keys the configured transport cannot do without."""
    missing: list[ConfigError] = []
    if kmip.transport == "binary":
        if not kmip.host:
            missing.append(
                ConfigError(f"{WHERE}.host", "required with transport binary: the KMIP server")
            )
        for key in ("client_certificate_file", "client_key_file"):
            if getattr(kmip, key) is None:
                missing.append(
                    ConfigError(
                        f"{WHERE}.{key}",
                        "required with transport binary: a KMIP server authenticates syncd by "
                        "its TLS client certificate",
                    )
                )
        return missing
    if not kmip.url:
        missing.append(
            ConfigError(
                f"{WHERE}.url",
                "required with transport json: the KMS's base URL (https://kms.example.com:9998)",
            )
        )
    certificate_file, key_file = kmip.client_certificate_file, kmip.client_key_file
    if (certificate_file is None) != (key_file is None):
        absent = "client_key_file" if key_file is None else "client_certificate_file"
        missing.append(ConfigError(f"{WHERE}.{absent}", "required with the other half of the pair"))
    if certificate_file is None and key_file is None and kmip.token is None:
        missing.append(
            ConfigError(
                WHERE,
                "transport json needs a way to authenticate: token_file (or token, token_env) "
                "or client_certificate_file with client_key_file",
            )
        )
    return missing


def _certificates(path: Path, key: str) -> list[x509.Certificate]:
    where = f"{WHERE}.{key}"
    data = read_private_file(path, where, strict_mode=False)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ConfigError(where, f"{path} holds no PEM certificate")
    return certificates


def _client_pair(kmip: KmipConfig) -> None:
    """The client certificate and key read, parse, and belong together."""
    if kmip.client_certificate_file is None or kmip.client_key_file is None:
        return
    certificate = _certificates(kmip.client_certificate_file, "client_certificate_file")[0]
    where = f"{WHERE}.client_key_file"
    path = kmip.client_key_file
    data = read_private_file(path, where, strict_mode=False)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(where, f"{path} holds no unencrypted PEM private key") from None
    if not key_matches_certificate(key, certificate):
        raise ConfigError(
            where,
            f"{path} is not the key of the client certificate {kmip.client_certificate_file}",
        )


def kmip_problems(config: Config) -> list[ConfigError]:
    """Every problem of the ``kms.kmip`` settings; none unless ``kms.backend`` is kmip."""
    if config.kms.backend != "kmip":
        return []
    kmip = config.kms.kmip
    problems = _required(kmip)
    checks: list[Callable[[], object]] = [
        lambda: _client_pair(kmip),
        lambda: kmip.ca_file is not None and _certificates(kmip.ca_file, "ca_file"),
        lambda: read_secret(kmip, "token", WHERE),
    ]
    for check in checks:
        try:
            check()
        except ConfigError as error:
            problems.append(error)
    return problems
