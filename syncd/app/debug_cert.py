"""``syncd cert issue``: one credential written to files instead of uploaded.

It writes the two files Google's own CSE sample uploads: ``EMAIL.p7pem`` (the PKCS#7 chain)
and ``EMAIL.wrap`` (JSON with ``kacls_url`` and ``wrapped_private_key``).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from syncd.app.context import App
from syncd.credentials.credential import make_credential
from syncd.credentials.issuers import load_issuer
from syncd.errors import ConfigError
from syncd.pki.profile import LeafProfile


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_debug_credential(
    app: App, email: str, out_dir: Path, *, bits: int | None, now: datetime
) -> list[Path]:
    config = app.config
    if not config.kacls.uri:
        raise ConfigError("kacls.uri", "required: it goes into EMAIL.wrap as kacls_url")
    email = email.strip().lower()
    keys = app.keyring(need_wrapping_key=True)
    issuer = load_issuer(app.database.sessions, config.ca.label)
    credential = make_credential(
        email,
        keys.configured,
        issuer,
        LeafProfile.from_config(config.certificate),
        bits=bits or config.certificate.key_bits,
        label=f"debug:{email}:{now:%Y%m%dT%H%M%S}",
        now=now,
        wrap=config.kacls.private_key_format,
        issuer_kms=keys.holding(issuer.kms_backend),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    chain_path = out_dir / f"{email}.p7pem"
    wrap_path = out_dir / f"{email}.wrap"
    _write(chain_path, credential.pkcs7, 0o644)
    wrapped = {"kacls_url": config.kacls.uri, "wrapped_private_key": credential.kacls_data}
    _write(wrap_path, json.dumps(wrapped, indent=2) + "\n", 0o600)
    app.audit(
        "cert.issued_debug",
        email=email,
        kms_key_id=credential.key.private_key_id,
        kms_backend=keys.name,
        serial=format(credential.certificate.serial_number, "x"),
        key_format=config.kacls.private_key_format,
    )
    return [chain_path, wrap_path]
