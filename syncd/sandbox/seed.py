"""Preparing a data directory: the directory file, trusted roots, and service accounts.

:func:`create_service_account` returns a Google-format key file (JSON) holding a private key:
the caller writes it with mode 0600 and must never log it. Only the public key is kept here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.sandbox.faults import parse_settings
from syncd.sandbox.store import (
    ACCOUNTS_FILE,
    DIRECTORY_FILES,
    ROOTS_FILE,
    AccountKey,
    DirectoryData,
    ServiceAccount,
    Store,
    atomic_write,
    stable_id,
    write_json,
)

_AUTH = "https://www.googleapis.com/auth/"
DEFAULT_DELEGATED_SCOPES = (
    _AUTH + "gmail.settings.basic",
    _AUTH + "admin.directory.user.readonly",
    _AUTH + "admin.directory.group.member.readonly",
)
"""What the demo's administrator grants the service account through domain-wide delegation."""


def create_service_account(
    data_dir: Path,
    client_email: str,
    token_uri: str,
    scopes: Iterable[str] = DEFAULT_DELEGATED_SCOPES,
) -> dict[str, Any]:
    """Generate a key for ``client_email``, register its public half, return the key file.

    Calling it again for the same account adds a key (like creating a second key in Google
    Cloud) and replaces the delegated scopes.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key_id = secrets.token_hex(20)
    client_id = stable_id("service-account", client_email)

    registry = Store(data_dir).service_accounts()
    account = registry.find(client_email)
    if account is None:
        account = ServiceAccount(client_email=client_email, client_id=client_id)
        registry.accounts.append(account)
    account.keys.append(AccountKey(private_key_id=key_id, public_key_pem=public_pem))
    account.scopes = list(scopes)
    write_json(Path(data_dir) / ACCOUNTS_FILE, registry.model_dump(), mode=0o600)

    project = client_email.split("@", 1)[-1].split(".", 1)[0]
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }


def _user_record(user: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"primaryEmail": user} if isinstance(user, str) else dict(user)


def init_sandbox_data(
    data_dir: Path,
    domain: str,
    users: Iterable[str | Mapping[str, Any]],
    trusted_roots_pem: str | bytes,
    *,
    groups: Iterable[Mapping[str, Any]] = (),
    customer_id: str = "C00sandbox",
    faults: Mapping[str, Any] | None = None,
) -> Path:
    """Write the directory file (JSON), the trusted roots and optional fault settings.

    ``users`` are addresses or Directory API user records (primaryEmail, suspended, isAdmin,
    orgUnitPath, customSchemas, ...). Returns the directory file's path.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    directory = DirectoryData.model_validate(
        {
            "domain": domain,
            "customerId": customer_id,
            "users": [_user_record(u) for u in users],
            "groups": [dict(g) for g in groups],
        }
    )
    for old in DIRECTORY_FILES:
        (data_dir / old).unlink(missing_ok=True)
    path = data_dir / "directory.json"
    write_json(path, directory.model_dump(exclude_none=True), mode=0o644)
    roots = trusted_roots_pem.encode() if isinstance(trusted_roots_pem, str) else trusted_roots_pem
    atomic_write(data_dir / ROOTS_FILE, roots, mode=0o644)
    if faults is not None:
        settings = parse_settings(dict(faults))
        write_json(data_dir / "faults.json", settings.model_dump(exclude_defaults=True), 0o644)
    return path
