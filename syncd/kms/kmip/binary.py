"""Binary KMIP (TTLV over TLS with a client certificate) through PyKMIP 0.11's client.

PyKMIP encodes and decodes every message; this module chooses the requests, holds a pool of
connections (one per concurrent thread) and turns PyKMIP's failures into syncd's errors (see
binary_errors); pykmip_client adapts PyKMIP's client (syncd's TLS, quiet logs, encodings).
"""

from __future__ import annotations

import select
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kmip.core import enums
from kmip.core.misc import KeyFormatType
from kmip.pie import objects as pie_objects
from kmip.pie.client import ProxyKmipClient
from kmip.pie.exceptions import KmipOperationFailure

from syncd.config import KmipConfig
from syncd.errors import ConfigError, KMSError, KMSRefusedError
from syncd.kms.base import HashName, PrivateKeyFormat
from syncd.kms.kmip.binary_errors import is_refusal, kms_error
from syncd.kms.kmip.pairs import GONE_STATES, KmipObject, pair_halves
from syncd.kms.kmip.pool import ConnectionPool
from syncd.kms.kmip.pykmip_client import (
    FORMATS,
    TRANSPORT_ERRORS,
    checked,
    open_client,
    private_der,
    spki,
)
from syncd.kms.kmip.tls import client_context
from syncd.kms.kmip.transport import CertifyRequest, KmipPair, NotSupportedByServer

T = TypeVar("T")

_HASHES = {
    "sha256": enums.HashingAlgorithm.SHA_256,
    "sha384": enums.HashingAlgorithm.SHA_384,
    "sha512": enums.HashingAlgorithm.SHA_512,
}
_KINDS = {
    enums.ObjectType.PRIVATE_KEY: "private_key",
    enums.ObjectType.PUBLIC_KEY: "public_key",
}
PUBLIC_SUFFIX = ".pub"
_KNOWN_PAIRS = 8192  # ids (two a pair) whose public key is known
# A Get with a wrapping specification refused for one of these: the server cannot wrap so.
WRAP_REFUSALS = {
    enums.ResultReason.INVALID_FIELD,
    enums.ResultReason.ILLEGAL_OPERATION,
    enums.ResultReason.CRYPTOGRAPHIC_FAILURE,
    enums.ResultReason.BAD_CRYPTOGRAPHIC_PARAMETERS,
    enums.ResultReason.UNSUPPORTED_CRYPTOGRAPHIC_PARAMETERS,
    enums.ResultReason.KEY_WRAP_TYPE_NOT_SUPPORTED,
    enums.ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
    enums.ResultReason.ENCODING_OPTION_ERROR,
    enums.ResultReason.OPERATION_NOT_SUPPORTED,
    enums.ResultReason.FEATURE_NOT_SUPPORTED,
}


def public_name(label: str) -> str:
    """The Name of a pair's public key: the label, marked. Some servers (CipherTrust) want
    names unique; the private key carries the label itself."""
    return f"{label}{PUBLIC_SUFFIX}"


def _name_attribute(client: ProxyKmipClient, label: str) -> Any:
    return client.attribute_factory.create_attribute(enums.AttributeType.NAME, label)


class BinaryTransport:
    """KmipTransport over binary KMIP with PyKMIP (``kms.kmip.transport: binary``)."""

    def __init__(self, config: KmipConfig) -> None:
        if not config.host:
            raise ConfigError("kms.kmip.host", "required for kms.kmip.transport: binary")
        if not config.verify_tls:
            raise ConfigError(
                "kms.kmip.verify_tls",
                "applies to kms.kmip.transport: json only; binary KMIP always checks the "
                "server's certificate (give its CA in kms.kmip.ca_file)",
            )
        self._host = config.host
        self._port = config.port
        self._timeout = float(config.timeout)
        self._context = client_context(config, transport="binary")
        self._pool: ConnectionPool[ProxyKmipClient] = ConnectionPool(
            self._connect, self._disconnect, self._is_stale, survives=is_refusal
        )
        self._lock = threading.Lock()
        self._pairs: OrderedDict[str, str] = OrderedDict()  # private id -> public id
        self._converts_formats = True  # until the server refuses a Get in another format

    # --- connections ------------------------------------------------------------------

    def describe(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"KMIP server {host}:{self._port}"

    def _connect(self) -> ProxyKmipClient:
        # Failures are reported by _call, for the operation that wanted the connection.
        client: ProxyKmipClient = open_client(self._host, self._port, self._context, self._timeout)
        return client

    @staticmethod
    def _disconnect(client: ProxyKmipClient) -> None:
        client.close()

    @staticmethod
    def _is_stale(client: ProxyKmipClient) -> bool:
        """An idle connection the server closed (or wrote to unasked) is readable: drop it."""
        sock = client.proxy.socket
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _call(self, operation: str, action: Callable[[ProxyKmipClient], T]) -> T:
        """Run ``action`` on a pooled connection; any failure becomes a syncd error."""
        try:
            with self._pool.connection() as client:
                return action(client)
        except KMSError:
            raise
        except TRANSPORT_ERRORS as error:
            raise kms_error(self.describe(), operation, error, self._timeout) from None

    def close(self) -> None:
        self._pool.close()

    @property
    def pool(self) -> ConnectionPool[ProxyKmipClient]:
        """The connections (their counts say how many threads ran at once)."""
        return self._pool

    # --- pairs --------------------------------------------------------------------------

    def _remember(self, pair: KmipPair) -> None:
        """Keep which public key goes with which private key (and that a public key is one),
        so that Get public key is one request for the keys this process made or found."""
        with self._lock:
            self._pairs[pair.private_key_id] = pair.public_key_id
            self._pairs[pair.public_key_id] = pair.public_key_id
            while len(self._pairs) > _KNOWN_PAIRS:
                self._pairs.popitem(last=False)

    def _known_public_id(self, private_id: str) -> str | None:
        with self._lock:
            return self._pairs.get(private_id)

    def _describe_object(self, client: ProxyKmipClient, uid: str) -> tuple[KmipObject, list[str]]:
        _, attributes = client.get_attributes(uid, ["Object Type", "State", "Initial Date", "Name"])
        values: dict[str, Any] = {}
        names: list[str] = []
        for attribute in attributes:
            name = attribute.attribute_name.value
            value = attribute.attribute_value
            if name == "Name":
                names.append(str(value.name_value.value))
            else:
                values[name] = value.value
        kind = _KINDS.get(values.get("Object Type"), "other")
        state = values.get("State")
        state_name = state.name.lower() if state is not None else "unknown"
        created = float(values.get("Initial Date") or 0)
        return KmipObject(uid, kind, state_name, created), names

    def _pairs_named(self, client: ProxyKmipClient, label: str) -> list[KmipPair]:
        uids: dict[str, None] = {}  # both names (and objects named otherwise by other tools)
        for name in (label, public_name(label)):
            uids.update(
                dict.fromkeys(
                    str(uid) for uid in client.locate(attributes=[_name_attribute(client, name)])
                )
            )
        objects = [self._describe_object(client, uid)[0] for uid in uids]
        pairs = pair_halves(objects)
        for pair in pairs:
            self._remember(pair)
        return pairs

    def _public_id(self, client: ProxyKmipClient, private_id: str) -> str:
        known = self._known_public_id(private_id)
        if known is not None:
            return known
        obj, names = self._describe_object(client, private_id)
        if obj.kind == "public_key":
            return private_id
        for name in names:
            for pair in self._pairs_named(client, name):
                if pair.private_key_id == private_id:
                    return pair.public_key_id
        return private_id

    # --- KmipTransport ------------------------------------------------------------------

    def create_key_pair(self, label: str, bits: int) -> KmipPair:
        def create(client: ProxyKmipClient) -> KmipPair:
            public_id, private_id = client.create_key_pair(
                enums.CryptographicAlgorithm.RSA,
                bits,
                public_name=public_name(label),
                public_usage_mask=[
                    enums.CryptographicUsageMask.VERIFY,
                    enums.CryptographicUsageMask.ENCRYPT,
                ],
                private_name=label,
                private_usage_mask=[
                    enums.CryptographicUsageMask.SIGN,
                    enums.CryptographicUsageMask.DECRYPT,
                ],
            )
            pair = KmipPair(str(private_id), str(public_id))
            self._remember(pair)
            client.activate(pair.private_key_id)
            return pair

        return self._call(f"CreateKeyPair RSA-{bits} {label!r}", create)

    def register_private_key(self, label: str, pkcs8_der: bytes, public_der: bytes) -> KmipPair:
        key = serialization.load_der_private_key(pkcs8_der, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KMSError(f"{self.describe()}: Register {label!r}: only RSA keys are supported")
        public = pie_objects.PublicKey(
            enums.CryptographicAlgorithm.RSA,
            key.key_size,
            public_der,
            enums.KeyFormatType.X_509,
            masks=[enums.CryptographicUsageMask.VERIFY],
            name=public_name(label),
        )
        private = pie_objects.PrivateKey(
            enums.CryptographicAlgorithm.RSA,
            key.key_size,
            pkcs8_der,
            enums.KeyFormatType.PKCS_8,
            masks=[enums.CryptographicUsageMask.SIGN],
            name=label,
        )

        def register(client: ProxyKmipClient) -> KmipPair:
            public_id = str(client.register(public))
            private_id = str(client.register(private))
            pair = KmipPair(private_id, public_id)
            self._remember(pair)
            client.activate(private_id)
            return pair

        return self._call(f"Register private key {label!r}", register)

    def public_key_der(self, key_id: str) -> bytes:
        def get(client: ProxyKmipClient) -> bytes:
            public_id = self._public_id(client, key_id)
            key = client.get(public_id)
            if not isinstance(key, pie_objects.PublicKey):
                raise KMSRefusedError(
                    f"{self.describe()}: Get public key of {key_id}: no public key found"
                )
            return spki(key)

        return self._call(f"Get public key {key_id}", get)

    def _get_private(
        self, client: ProxyKmipClient, key_id: str, key_format: PrivateKeyFormat, spec: Any
    ) -> Any:
        result = checked(
            client.proxy.get(
                key_id,
                key_format_type=KeyFormatType(FORMATS[key_format]),
                key_wrapping_specification=spec,
            )
        )
        return client.object_factory.convert(result.secret)

    def private_key_der(self, key_id: str, key_format: PrivateKeyFormat) -> bytes:
        def get(client: ProxyKmipClient) -> bytes:
            # PyKMIP hands out revoked keys too: syncd wraps only active ones, as the local
            # backend does (a revoked key must not reach Gmail).
            obj, _ = self._describe_object(client, key_id)
            if obj.kind != "private_key" or obj.state != "active":
                what = "not a private key" if obj.kind != "private_key" else "key not active"
                raise KMSRefusedError(
                    f"{self.describe()}: Get private key {key_id}: {what} ({obj.state})"
                )
            if self._converts_formats:
                try:
                    key = self._get_private(client, key_id, key_format, None)
                except KmipOperationFailure as failure:
                    if failure.reason != enums.ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED:
                        raise
                    self._converts_formats = False  # PyKMIP: only the format it stored
            if not self._converts_formats:
                key = client.get(key_id)
            if not isinstance(key, pie_objects.PrivateKey):
                raise KMSRefusedError(
                    f"{self.describe()}: Get private key {key_id}: not a private key"
                )
            return private_der(bytes(key.value), key.key_format_type, key_format)

        return self._call(f"Get private key {key_id}", get)

    def wrapped_private_key(
        self, key_id: str, key_format: PrivateKeyFormat, wrapping_key_id: str
    ) -> bytes:
        def get(client: ProxyKmipClient) -> bytes:
            spec = client._build_key_wrapping_specification(
                {
                    "wrapping_method": enums.WrappingMethod.ENCRYPT,
                    "encryption_key_information": {
                        "unique_identifier": wrapping_key_id,
                        "cryptographic_parameters": {
                            "block_cipher_mode": enums.BlockCipherMode.GCM,
                        },
                    },
                    "encoding_option": enums.EncodingOption.NO_ENCODING,
                }
            )
            try:
                key = self._get_private(client, key_id, key_format, spec)
            except KmipOperationFailure as failure:
                raise self._wrap_refusal(client, failure, operation, wrapping_key_id) from None
            if key.key_wrapping_data is None:
                raise NotSupportedByServer(
                    f"{self.describe()}: Get private key {key_id} wrapped by {wrapping_key_id}: "
                    "the server returned it unwrapped"
                )
            return bytes(key.value)

        operation = f"Get private key {key_id} wrapped by {wrapping_key_id} (AES-GCM)"
        return self._call(operation, get)

    def _wrap_refusal(
        self,
        client: ProxyKmipClient,
        failure: KmipOperationFailure,
        operation: str,
        wrapping_key_id: str,
    ) -> BaseException:
        """What a refused Get with a wrapping specification means: NotSupportedByServer when
        the server cannot wrap so (PyKMIP: RFC 3394 only, answered as an invalid field) or has
        no key ``wrapping_key_id``; else the refusal as it is (the private key's own)."""
        if failure.reason in WRAP_REFUSALS:
            return NotSupportedByServer(str(kms_error(self.describe(), operation, failure, 0)))
        if failure.reason == enums.ResultReason.ITEM_NOT_FOUND:
            try:
                client.get_attributes(wrapping_key_id, ["State"])
            except KmipOperationFailure as missing:
                if missing.reason != enums.ResultReason.ITEM_NOT_FOUND:
                    raise
                return NotSupportedByServer(
                    f"{self.describe()}: {operation}: no wrapping key {wrapping_key_id} "
                    "(kacls.kms_key_id)"
                )
        unchanged: BaseException = failure
        return unchanged

    def sign(self, key_id: str, data: bytes, hash_name: HashName) -> bytes:
        parameters = {
            "cryptographic_algorithm": enums.CryptographicAlgorithm.RSA,
            "padding_method": enums.PaddingMethod.PKCS1v15,
            "hashing_algorithm": _HASHES[hash_name],
        }
        return self._call(
            f"Sign with key {key_id}",
            lambda client: bytes(
                client.sign(data, uid=key_id, cryptographic_parameters=parameters)
            ),
        )

    def certify(self, request: CertifyRequest) -> bytes:
        raise NotSupportedByServer(
            f"{self.describe()}: Certify public key {request.public_key_id}: "
            "not available through the binary transport (PyKMIP has no Certify)"
        )

    def locate(self, label: str) -> list[KmipPair]:
        def locate(client: ProxyKmipClient) -> list[KmipPair]:
            pairs = self._pairs_named(client, label)
            return [self._finish_creation(client, pair) for pair in pairs]

        return self._call(f"Locate {label!r}", locate)

    @staticmethod
    def _finish_creation(client: ProxyKmipClient, pair: KmipPair) -> KmipPair:
        """A pair left pre-active (the session dropped between CreateKeyPair and Activate) is
        activated, so that a resumed pass uses it instead of making another."""
        if pair.state != "pre_active":
            return pair
        client.activate(pair.private_key_id)
        return KmipPair(pair.private_key_id, pair.public_key_id, "active")

    def _revoke_one(self, client: ProxyKmipClient, uid: str, reason: str) -> None:
        try:
            client.revoke(
                enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid, revocation_message=reason
            )
        except KmipOperationFailure as failure:
            # Revoking what is no longer active: already revoked (or never activated).
            if failure.reason not in (
                enums.ResultReason.ILLEGAL_OPERATION,
                enums.ResultReason.WRONG_KEY_LIFECYCLE_STATE,
            ):
                raise
            if self._describe_object(client, uid)[0].state == "active":
                raise

    def revoke(self, key_id: str, reason: str) -> None:
        def revoke(client: ProxyKmipClient) -> None:
            public_id = self._public_id(client, key_id)
            self._revoke_one(client, key_id, reason)
            if (
                public_id != key_id
                and self._describe_object(client, public_id)[0].state == "active"
            ):
                self._revoke_one(client, public_id, reason)

        self._call(f"Revoke key {key_id}", revoke)

    def _destroy_one(self, client: ProxyKmipClient, uid: str) -> None:
        try:
            client.destroy(uid)
        except KmipOperationFailure as failure:
            if failure.reason != enums.ResultReason.ITEM_NOT_FOUND:  # destroyed already
                raise

    def destroy(self, key_id: str) -> None:
        def destroy(client: ProxyKmipClient) -> None:
            try:
                public_id = self._public_id(client, key_id)
                obj, _ = self._describe_object(client, key_id)
            except KmipOperationFailure as failure:
                if failure.reason == enums.ResultReason.ITEM_NOT_FOUND:
                    return  # destroyed already (PyKMIP deletes destroyed objects)
                raise
            if obj.state in GONE_STATES:
                return
            if obj.state == "active":
                raise KMSRefusedError(
                    f"{self.describe()}: Destroy key {key_id}: the key is active; revoke it first"
                )
            # The public key first: if this stops half-way, the private key (still there,
            # still named) is what a retry finds and finishes.
            if public_id != key_id:
                self._destroy_one(client, public_id)
            self._destroy_one(client, key_id)

        self._call(f"Destroy key {key_id}", destroy)
