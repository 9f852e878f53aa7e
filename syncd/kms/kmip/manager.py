"""The KMIP key manager (``kms.backend: kmip``): every key lives in an external KMS.

Each KeyManager operation is one transport call (binary KMIP through PyKMIP, or Cosmian's JSON
TTLV); this module adds only what is syncd's own: kaclsData made by the KMS or, where the KMS
cannot, by syncd in memory with the KACLS key (``kms.kmip.server_side_wrap``), in the private
key format ``kacls.private_key_format`` asks for; and a small cache of the public keys of the
keys this process used last (public, so safe to keep; bounded, so memory stays flat).
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)

from syncd.config import Config, KmipConfig
from syncd.errors import ConfigError, KMSError
from syncd.kms.base import HashName, KeyManager, KeyRef, LeafRequest, PrivateKeyFormat
from syncd.kms.kacls import MAX_KACLS_DATA, wrap_private_key
from syncd.kms.kmip.certify import certify_leaf
from syncd.kms.kmip.transport import KmipPair, KmipTransport, NotSupportedByServer

WrapMode = Literal["auto", "always", "never"]
SigningMode = Literal["auto", "sign", "certify"]
RSA_SIZES = (2048, 3072, 4096)
RECENT_PUBLIC_KEYS = 256


def kacls_data_from_server(sealed: bytes) -> str:
    """kaclsData from what the KMS returned (``nonce || ciphertext || tag``): its base64."""
    data = base64.b64encode(sealed).decode("ascii")
    if len(data) > MAX_KACLS_DATA:
        raise KMSError(f"wrapped private key is {len(data)} bytes; Gmail accepts at most 8 KiB")
    return data


def _key_ref(label: str, pair: KmipPair) -> KeyRef:
    return KeyRef(label, pair.private_key_id, pair.public_key_id, pair.state)


class KmipKeyManager(KeyManager):
    """KeyManager over a KmipTransport."""

    name = "kmip"

    def __init__(
        self,
        transport: KmipTransport,
        *,
        server_side_wrap: WrapMode = "auto",
        kms_key_id: str = "google_cse",
        wrapping_key: bytes | None = None,
        signing: SigningMode = "auto",
    ) -> None:
        self.transport = transport
        self._certifies: bool | None = {"sign": False, "certify": True}.get(signing)
        self._signing = signing
        self._mode = server_side_wrap
        self._kms_key_id = kms_key_id
        self._wrapping_key = wrapping_key
        self._lock = threading.Lock()
        self._server_wraps: bool | None = {"always": True, "never": False}.get(server_side_wrap)
        self._why_client_side = ""
        self._recent_public: OrderedDict[str, CertificateIssuerPublicKeyTypes] = OrderedDict()

    # --- the public key cache ----------------------------------------------------------

    def _keep_public(self, key_ids: list[str], key: CertificateIssuerPublicKeyTypes) -> None:
        with self._lock:
            for key_id in key_ids:
                self._recent_public[key_id] = key
            while len(self._recent_public) > RECENT_PUBLIC_KEYS:
                self._recent_public.popitem(last=False)

    # --- KeyManager ---------------------------------------------------------------------

    def create_key_pair(self, label: str, bits: int) -> KeyRef:
        if bits not in RSA_SIZES:
            raise KMSError(f"RSA key size {bits} not supported; use 2048, 3072 or 4096")
        return _key_ref(label, self.transport.create_key_pair(label, bits))

    def import_private_key(self, label: str, key: CertificateIssuerPrivateKeyTypes) -> KeyRef:
        if not isinstance(key, rsa.RSAPrivateKey):
            # KMIP Sign is asked for RSA PKCS#1 v1.5 (the transport contract): an EC issuer
            # would need other signature parameters, which syncd does not send.
            raise KMSError(
                f"{self.transport.describe()}: cannot import a {type(key).__name__}: "
                "kms.backend kmip takes RSA issuer keys only"
            )
        pkcs8 = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key()
        spki = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pair = self.transport.register_private_key(label, pkcs8, spki)
        self._keep_public([pair.public_key_id, pair.private_key_id], public)
        return _key_ref(label, pair)

    def _load_public(self, der: bytes) -> CertificateIssuerPublicKeyTypes:
        key = serialization.load_der_public_key(der)
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise KMSError(f"{self.transport.describe()}: not an RSA or EC public key")
        return key

    def public_key(self, key_id: str) -> CertificateIssuerPublicKeyTypes:
        with self._lock:
            recent = self._recent_public.get(key_id)
        if recent is not None:
            return recent
        key = self._load_public(self.transport.public_key_der(key_id))
        self._keep_public([key_id], key)
        return key

    def sign(self, private_key_id: str, data: bytes, hash_name: HashName) -> bytes:
        try:
            return self.transport.sign(private_key_id, data, hash_name)
        except NotSupportedByServer:
            if self._signing == "auto":
                with self._lock:
                    self._certifies = True  # the next certificate goes through Certify
            raise

    # --- certificates made by the KMS (Certify) -----------------------------------------

    def signing_mode(self) -> Literal["sign", "certify"] | None:
        """How the issuer key makes certificates: KMIP Sign over syncd's to-be-signed bytes, or
        KMIP Certify; None while ``auto`` has not tried Sign yet."""
        with self._lock:
            certifies = self._certifies
        return None if certifies is None else ("certify" if certifies else "sign")

    def certify_in_kms(self, request: LeafRequest) -> x509.Certificate | None:
        if self.signing_mode() != "certify":
            return None
        return certify_leaf(self.transport, request)

    def locate(self, label: str) -> list[KeyRef]:
        return [_key_ref(label, pair) for pair in self.transport.locate(label)]

    def revoke(self, private_key_id: str, reason: str) -> None:
        self.transport.revoke(private_key_id, reason)

    def destroy(self, private_key_id: str) -> None:
        self.transport.destroy(private_key_id)

    def close(self) -> None:
        self.transport.close()

    # --- kaclsData ----------------------------------------------------------------------

    def wrapping_mode(self) -> Literal["server", "client"] | None:
        """Who makes kaclsData: the KMS (``server``) or syncd (``client``); None while
        ``auto`` has not tried the KMS yet."""
        with self._lock:
            server = self._server_wraps
        return None if server is None else ("server" if server else "client")

    def wrapped_private_key(self, private_key_id: str, key_format: PrivateKeyFormat) -> str:
        with self._lock:
            server = self._server_wraps
        if server is not False:
            try:
                sealed = self.transport.wrapped_private_key(
                    private_key_id, key_format, self._kms_key_id
                )
            except NotSupportedByServer as refused:
                if self._mode == "always":
                    raise NotSupportedByServer(
                        f"{refused}; kms.kmip.server_side_wrap is always (set auto or never "
                        "to wrap with kacls.wrapping_key instead)"
                    ) from None
                with self._lock:
                    self._server_wraps = False
                    self._why_client_side = str(refused)
            else:
                with self._lock:
                    self._server_wraps = True
                return kacls_data_from_server(sealed)
        return self._wrap_client_side(private_key_id, key_format)

    def _wrap_client_side(self, private_key_id: str, key_format: PrivateKeyFormat) -> str:
        if self._wrapping_key is None:
            why = (
                f"the KMS cannot wrap private keys ({self._why_client_side})"
                if self._why_client_side
                else "kms.kmip.server_side_wrap is never"
            )
            raise ConfigError(
                "kacls.wrapping_key_file",
                f"required: {why}, so syncd wraps them itself with the KACLS key",
            )
        der = self.transport.private_key_der(private_key_id, key_format)
        return wrap_private_key(der, self._wrapping_key)


def open_transport(config: KmipConfig) -> KmipTransport:
    """The transport ``kms.kmip.transport`` names, with its required settings checked."""
    if config.transport == "json":
        from syncd.kms.kmip.json_transport import JsonTransport

        return JsonTransport(config)
    from syncd.kms.kmip.binary import BinaryTransport

    return BinaryTransport(config)


def open_kmip_key_manager(config: Config, wrapping_key: bytes | None) -> KmipKeyManager:
    """The KMIP key manager the configuration describes (ConfigError when it is incomplete)."""
    kmip = config.kms.kmip
    return KmipKeyManager(
        open_transport(kmip),
        server_side_wrap=kmip.server_side_wrap,
        kms_key_id=config.kacls.kms_key_id,
        wrapping_key=wrapping_key,
        signing=kmip.signing,
    )
