"""The key management sections: ``kms`` (a tagged union on ``backend``) and ``kacls``.

Both backends' settings stay readable whatever ``backend`` says: keys made before the backend
changed are still used through their own backend (:mod:`syncd.kms.keyring`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from syncd.config.base import Section
from syncd.config.secrets import SecretRef
from syncd.config.types import ConfigPath, Duration


class LocalKMSConfig(Section):
    """The embedded KMS: keys in the state store, wrapped with a master key."""

    master_key_file: ConfigPath = Path("/var/lib/syncd/master.key")
    """32 random bytes, mode 0600, created by ``syncd init``."""


class KmipConfig(Section):
    """An external KMS spoken to over KMIP (``kms.backend: kmip``)."""

    transport: Literal["binary", "json"] = "binary"
    """binary: TTLV over TLS with a client certificate (any KMIP server, port 5696);
    json: Cosmian KMS's JSON TTLV posted over HTTPS to ``<url>/kmip/2_1``."""
    host: str | None = None
    """binary: the KMIP server's host name (checked against its certificate)."""
    port: int = Field(default=5696, ge=1, le=65535)
    """binary: the KMIP server's port."""
    url: str | None = None
    """json: the KMS's base URL, e.g. ``https://kms.example.com:9998``."""
    client_certificate_file: ConfigPath | None = None
    """The client certificate (clientAuth), PEM: required for binary, optional for json."""
    client_key_file: ConfigPath | None = None
    """The client certificate's key, PEM: required for binary, optional for
    json (where a bearer token may be used instead)."""
    ca_file: ConfigPath | None = None
    """PEM trust anchors for the server's certificate; default: the system's."""
    verify_tls: bool = True
    """Check the server's certificate and host name; off only when set to false (json only)."""
    token: SecretRef | None = None
    """json: a bearer token for Cosmian KMS's authentication."""
    timeout: Duration = 30.0
    """Seconds for one KMIP operation, connection included."""
    server_side_wrap: Literal["auto", "always", "never"] = "auto"
    """kaclsData made by the KMS (KMIP Get with a key wrapping specification, the key
    ``kacls.kms_key_id``, AES-GCM) or by syncd with ``kacls.wrapping_key``. auto: the KMS when
    it can, else syncd (``syncd kms test`` says which)."""
    signing: Literal["auto", "sign", "certify"] = "auto"
    """How certificates are signed by the issuer key in the KMS: KMIP Sign over the
    to-be-signed bytes, or KMIP Certify (Cosmian releases without Sign). auto: Sign when offered."""

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url.rstrip("/") if url is not None else None


_BACKEND = "Where keys are made and kept: local (embedded) or kmip (an external KMS)."
_LOCAL = "The embedded KMS's settings (also used for keys it made before a switch to kmip)."
_KMIP = "The external KMS's settings (required when backend is kmip)."


class LocalBackendKMS(Section):
    """Keys in the embedded KMS (``backend: local``, the default)."""

    backend: Literal["local"] = Field(default="local", description=_BACKEND)
    local: LocalKMSConfig = Field(default=LocalKMSConfig(), description=_LOCAL)
    kmip: KmipConfig = Field(default=KmipConfig(), description=_KMIP)


class KmipBackendKMS(Section):
    """Keys in an external KMS over KMIP (``backend: kmip``)."""

    backend: Literal["kmip"] = Field(description=_BACKEND)
    local: LocalKMSConfig = Field(default=LocalKMSConfig(), description=_LOCAL)
    kmip: KmipConfig = Field(description=_KMIP)


BACKENDS = ("local", "kmip")
"""The values of ``kms.backend``."""


def _backend_tag(value: Any) -> str:
    if isinstance(value, Section):
        return str(getattr(value, "backend", "local"))
    if not isinstance(value, Mapping):
        return "local"
    backend = value.get("backend", "local")
    return backend if isinstance(backend, str) else repr(backend)


KMSConfig = Annotated[
    Annotated[LocalBackendKMS, Tag("local")] | Annotated[KmipBackendKMS, Tag("kmip")],
    Discriminator(_backend_tag),
]
"""The ``kms`` section: one variant per ``backend``."""


def with_backend(kms: KMSConfig, backend: str) -> KMSConfig:
    """``kms`` with ``backend`` named instead (both backends' settings kept)."""
    if backend == "kmip":
        return KmipBackendKMS(backend="kmip", local=kms.local, kmip=kms.kmip)
    return LocalBackendKMS(local=kms.local, kmip=kms.kmip)


class KACLSConfig(Section):
    """The key access control list service Gmail calls to unwrap private keys."""

    uri: str | None = None
    """The KACLS URL Gmail calls to unwrap private keys (Cosmian: public URL + /google_cse)."""
    wrapping_key: SecretRef | None = None
    """The AES-256 key that wraps private keys for the KACLS: 32 raw bytes or their base64."""
    kms_key_id: str = "google_cse"
    """The id, in an external KMS, of the AES key the KACLS unwraps kaclsData with (Cosmian:
    ``google_cse``): the wrapping key when the KMS wraps (``kms.kmip.server_side_wrap``)."""
    private_key_format: Literal["pkcs1", "pkcs8"] = "pkcs1"
    """What kaclsData holds once unwrapped: a PKCS#1 RSAPrivateKey (what Cosmian's KACLS
    parses on every route) or a PKCS#8 PrivateKeyInfo (syncd before issue 12)."""

    @field_validator("uri")
    @classmethod
    def _url(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return uri
