"""A Cosmian-KMS-shaped HTTP(S) front for the test PyKMIP server: JSON TTLV in, binary KMIP out.

It accepts Cosmian's JSON TTLV 2.1 operations at ``POST /kmip/2_1`` (bearer token checked as
Cosmian's API-token authentication does) and ``GET /version``, forwards each operation to the
real PyKMIP server with PyKMIP's own binary client, and answers in Cosmian's response shapes,
or with Cosmian's error shapes: an HTTP status and a plain-text reason (see
fixtures/cosmian/errors.json for where each comes from).

Mapping: a Cosmian tag list ``[label, "_sk"]`` is a PyKMIP Name ``label`` on a private key
(``_pk``: public key). PyKMIP keeps no Link between the two halves of a pair, so the bridge
remembers the links of the pairs made or imported through it, as Cosmian keeps them.

What PyKMIP cannot do, the bridge answers as a Cosmian release without that feature would:
Get with AES-GCM key wrapping is "Not Supported" (422), Certify is "Route not supported"
(404). ``version`` chooses the generation it impersonates (4.x: tags as hex ByteStrings,
no Sign).

Test code only: it reads requests from the tests' own client and holds no secrets of value.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from kmip.core import enums
from kmip.core.factories import attributes as attribute_factory
from kmip.pie import exceptions as pie_exceptions
from kmip.pie import objects
from kmip.pie.client import ProxyKmipClient

from syncd.kms.kmip import json_codec as jc
from syncd.kms.kmip import json_ttlv as jt
from tests.kmip.server import ClientFiles, PyKmipServer


class CosmianError(Exception):
    """An HTTP error answer in Cosmian's shape."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def _not_found(uid: str) -> CosmianError:
    return CosmianError(422, f"Object_Not_Found: object not found for identifier {uid}")


def _route(operation: str) -> CosmianError:
    return CosmianError(404, f"Route not supported: Operation: {operation}")


_STATE_NAMES = {
    enums.State.PRE_ACTIVE: "PreActive", enums.State.ACTIVE: "Active",
    enums.State.DEACTIVATED: "Deactivated", enums.State.COMPROMISED: "Compromised",
    enums.State.DESTROYED: "Destroyed", enums.State.DESTROYED_COMPROMISED: "Destroyed_Compromised",
}
_HASHES = {
    "SHA256WithRSAEncryption": enums.HashingAlgorithm.SHA_256,
    "SHA384WithRSAEncryption": enums.HashingAlgorithm.SHA_384,
    "SHA512WithRSAEncryption": enums.HashingAlgorithm.SHA_512,
}
_PRIVATE_MASKS = [enums.CryptographicUsageMask.SIGN, enums.CryptographicUsageMask.DECRYPT]
_PUBLIC_MASKS = [enums.CryptographicUsageMask.VERIFY, enums.CryptographicUsageMask.ENCRYPT]


class Bridge:
    """The operations, over one PyKMIP client (PyKMIP's client is not thread-safe: one lock)."""

    def __init__(self, pykmip: PyKmipServer, client: ClientFiles, version: str) -> None:
        self.version = version
        self.dialect = jt.parse_version(version) or jt.V5
        self._client = ProxyKmipClient(
            hostname=pykmip.host, port=pykmip.port, cert=str(client.certificate),
            key=str(client.key), ca=str(client.ca), config_file="/dev/null",
        )
        self._client.open()
        self._lock = threading.Lock()
        self._links: dict[str, tuple[str, str]] = {}
        """object id -> (link type, other half's id)"""
        self._factory = attribute_factory.AttributeFactory()

    def close(self) -> None:
        self._client.close()

    def handle(self, request: jc.Item) -> jc.Item:
        handlers: dict[str, Callable[[jc.Item], jc.Item]] = {
            "CreateKeyPair": self._create_key_pair, "Import": self._import, "Get": self._get,
            "GetAttributes": self._get_attributes, "Locate": self._locate, "Sign": self._sign,
            "Revoke": self._revoke, "Destroy": self._destroy,
        }
        handler = handlers.get(request.tag)
        if handler is None or (request.tag == "Sign" and not self.dialect.has_sign):
            raise _route(request.tag)
        with self._lock:
            try:
                return handler(request)
            except pie_exceptions.KmipOperationFailure as failure:
                raise self._failure(request, failure) from None

    @staticmethod
    def _failure(request: jc.Item, failure: pie_exceptions.KmipOperationFailure) -> CosmianError:
        uid_item = request.child("UniqueIdentifier")
        uid = str(uid_item.value) if uid_item is not None else ""
        if failure.reason in (enums.ResultReason.ITEM_NOT_FOUND,
                              enums.ResultReason.PERMISSION_DENIED):
            # Cosmian does not tell an object another user owns from a missing one
            return _not_found(uid)
        return CosmianError(422, f"{failure.reason.name.title()}: {failure.message}")

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _label(tags: list[str]) -> tuple[str, str | None]:
        """(the user label, the system tag) of a tag list."""
        users = [tag for tag in tags if not tag.startswith("_")]
        systems = [tag for tag in tags if tag.startswith("_")]
        if len(users) != 1 or len(systems) > 1:
            raise CosmianError(422, f"Invalid_Request: the bridge takes one user tag and at most "
                                    f"one system tag, got {tags}")
        return users[0], systems[0] if systems else None

    @staticmethod
    def _uid(request: jc.Item) -> str:
        uid = request.text("UniqueIdentifier")
        if uid.startswith("["):
            raise CosmianError(422, "Invalid_Request: the bridge takes ids, not tag lists")
        return uid

    # -- operations ----------------------------------------------------------------------------

    def _create_key_pair(self, request: jc.Item) -> jc.Item:
        common = request.need("CommonAttributes")
        if common.text("CryptographicAlgorithm") != "RSA":
            raise CosmianError(422, "Not Supported: the bridge makes RSA key pairs only")
        label, _ = self._label(jt.read_tags(common))
        public_id, private_id = self._client.create_key_pair(
            enums.CryptographicAlgorithm.RSA, common.need("CryptographicLength").value,
            public_name=label, public_usage_mask=_PUBLIC_MASKS,
            private_name=label, private_usage_mask=_PRIVATE_MASKS,
        )
        if common.child("ActivationDate") is not None:
            self._client.activate(private_id)
            self._client.activate(public_id)
        self._links[private_id] = ("PublicKeyLink", public_id)
        self._links[public_id] = ("PrivateKeyLink", private_id)
        return jc.struct("CreateKeyPairResponse",
                         jc.text("PrivateKeyUniqueIdentifier", private_id),
                         jc.text("PublicKeyUniqueIdentifier", public_id))

    def _import(self, request: jc.Item) -> jc.Item:
        attributes = request.need("Attributes")
        label, _ = self._label(jt.read_tags(attributes))
        block = request.need("Object").need("KeyBlock")
        if block.text("KeyFormatType") != "PKCS8":
            raise CosmianError(422, "Not Supported: the bridge imports PKCS8 keys only")
        der = block.need("KeyValue").need("KeyMaterial").value
        managed: objects.PrivateKey | objects.PublicKey
        if request.text("ObjectType") == "PrivateKey":
            key = serialization.load_der_private_key(der, None)
            managed = objects.PrivateKey(enums.CryptographicAlgorithm.RSA, key.key_size, der,
                                         enums.KeyFormatType.PKCS_8, masks=_PRIVATE_MASKS,
                                         name=label)
        else:
            public = serialization.load_der_public_key(der)
            managed = objects.PublicKey(enums.CryptographicAlgorithm.RSA, public.key_size, der,
                                        enums.KeyFormatType.X_509, masks=_PUBLIC_MASKS,
                                        name=label)
        uid = self._client.register(managed)
        if attributes.child("ActivationDate") is not None:
            self._client.activate(uid)
        other = jt.read_links(attributes).get("PublicKeyLink")
        if other is not None:
            self._links[uid] = ("PublicKeyLink", other)
            self._links[other] = ("PrivateKeyLink", uid)
        return jc.struct("ImportResponse", jc.text("UniqueIdentifier", uid))

    def _get(self, request: jc.Item) -> jc.Item:
        uid = self._uid(request)
        if request.child("KeyWrappingSpecification") is not None:
            # PyKMIP wraps with NIST key wrap only; a Cosmian without AES-GCM wrapping says so
            self._client.get_attributes(uid, ["State"])  # unknown ids still answer not found
            raise CosmianError(422, "Not Supported: key wrapping with AES GCM is not supported "
                                    "by this server")
        managed = self._client.get(uid)
        wanted = request.child("KeyFormatType")
        if isinstance(managed, objects.PrivateKey):
            key = serialization.load_der_private_key(managed.value, None)
            form = wanted.value if wanted is not None else "PKCS8"
            private_format = {"PKCS1": serialization.PrivateFormat.TraditionalOpenSSL,
                              "PKCS8": serialization.PrivateFormat.PKCS8}.get(form)
            if private_format is None:
                raise CosmianError(422, f"Not Supported: export of a private key as {form}")
            data = key.private_bytes(serialization.Encoding.DER, private_format,
                                     serialization.NoEncryption())
            object_type = "PrivateKey"
        elif isinstance(managed, objects.PublicKey):
            # PyKMIP's own pairs hold PKCS#1 RSAPublicKey, imported ones SubjectPublicKeyInfo:
            # cryptography reads both
            public = serialization.load_der_public_key(managed.value)
            form = "PKCS8"
            data = public.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
            object_type = "PublicKey"
        else:
            raise CosmianError(422, f"Not Supported: the bridge returns keys only, not "
                                    f"{type(managed).__name__}")
        return jc.struct(
            "GetResponse", jc.enum("ObjectType", object_type), jc.text("UniqueIdentifier", uid),
            jc.struct("Object", jc.struct(
                "KeyBlock", jc.enum("KeyFormatType", form),
                jc.struct("KeyValue", jc.byte_string("KeyMaterial", data)),
                jc.enum("CryptographicAlgorithm", "RSA"),
            )),
        )

    def _get_attributes(self, request: jc.Item) -> jc.Item:
        uid = self._uid(request)
        _, found = self._client.get_attributes(uid, ["State", "Initial Date", "Object Type",
                                                     "Name"])
        values = {item.attribute_name.value: item.attribute_value for item in found}
        object_type = "PrivateKey" if values["Object Type"].value == \
            enums.ObjectType.PRIVATE_KEY else "PublicKey"
        system = jt.SYSTEM_TAG_PRIVATE if object_type == "PrivateKey" else jt.SYSTEM_TAG_PUBLIC
        items = [
            jc.enum("ObjectType", object_type),
            jc.enum("State", _STATE_NAMES[values["State"].value]),
            jc.date_time("InitialDate", dt.datetime.fromtimestamp(values["Initial Date"].value,
                                                                   dt.UTC)),
        ]
        if uid in self._links:
            items += jt.links(self.dialect, [self._links[uid]])
        name = values.get("Name")
        tags = [name.name_value.value, system] if name is not None else [system]
        items += jt.vendor_attributes(self.dialect, [jt.tag_attribute(self.dialect, tags)])
        return jc.struct("GetAttributesResponse", jc.text("UniqueIdentifier", uid),
                         jc.struct("Attributes", *items))

    def _locate(self, request: jc.Item) -> jc.Item:
        label, system = self._label(jt.read_tags(request.need("Attributes")))
        wanted = [self._factory.create_attribute(enums.AttributeType.NAME, label)]
        object_types = {jt.SYSTEM_TAG_PRIVATE: enums.ObjectType.PRIVATE_KEY,
                        jt.SYSTEM_TAG_PUBLIC: enums.ObjectType.PUBLIC_KEY}
        if system is not None:
            if system not in object_types:
                return jc.struct("LocateResponse", jc.integer("LocatedItems", 0))
            wanted.append(self._factory.create_attribute(enums.AttributeType.OBJECT_TYPE,
                                                         object_types[system]))
        found = self._client.locate(attributes=wanted)
        return jc.struct("LocateResponse", jc.integer("LocatedItems", len(found)),
                         *(jc.text("UniqueIdentifier", uid) for uid in found))

    def _sign(self, request: jc.Item) -> jc.Item:
        uid = self._uid(request)
        algorithm = request.need("CryptographicParameters").text("DigitalSignatureAlgorithm")
        if algorithm not in _HASHES:
            raise CosmianError(422, f"Not Supported: signature algorithm {algorithm}")
        signature = self._client.sign(request.need("Data").value, uid, {
            "cryptographic_algorithm": enums.CryptographicAlgorithm.RSA,
            "padding_method": enums.PaddingMethod.PKCS1v15,
            "hashing_algorithm": _HASHES[algorithm],
        })
        return jc.struct("SignResponse", jc.text("UniqueIdentifier", uid),
                         jc.byte_string("SignatureData", signature))

    def _revoke(self, request: jc.Item) -> jc.Item:
        uid = self._uid(request)
        reason = request.need("RevocationReason")
        message = reason.value if reason.kind == "TextString" else (
            reason.child("RevocationMessage").value  # type: ignore[union-attr]
            if reason.child("RevocationMessage") is not None else None)
        self._client.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid, message)
        return jc.struct("RevokeResponse", jc.text("UniqueIdentifier", uid))

    def _destroy(self, request: jc.Item) -> jc.Item:
        uid = self._uid(request)
        self._client.destroy(uid)
        return jc.struct("DestroyResponse", jc.text("UniqueIdentifier", uid))


class _Handler(BaseHTTPRequestHandler):
    server: _BridgeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, error: CosmianError) -> None:
        self._answer(error.status, error.body.encode(), "text/html; charset=utf-8")

    def _authenticated(self) -> bool:
        if self.server.token is None:  # client certificates only (checked by TLS)
            return True
        header = self.headers.get("Authorization")
        if header is None:
            self._answer(401, b"No authentication provided.", "text/plain")
            return False
        if header != f"Bearer {self.server.token}":
            self._error(CosmianError(
                401, "Access denied: Client and server authentication tokens mismatch"))
            return False
        return True

    def do_GET(self) -> None:
        if not self._authenticated():
            return
        if self.path != "/version":
            self._error(CosmianError(404, f"Route not supported: {self.path}"))
            return
        self._answer(200, json.dumps(self.server.bridge.version).encode(), "application/json")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self._authenticated():
            return
        if self.path != "/kmip/2_1":
            self._error(CosmianError(404, f"Route not supported: {self.path}"))
            return
        self.server.requests.append(body)
        try:
            answer = self.server.bridge.handle(jc.loads(body))
        except CosmianError as error:
            self._error(error)
            return
        except jc.TtlvError as exc:
            self._error(CosmianError(422, f"Invalid Request: {exc}"))
            return
        self._answer(200, jc.dumps(answer), "application/json")


class _BridgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, bridge: Bridge, token: str | None, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bridge = bridge
        self.token = token
        self.tls = tls
        self.requests: list[bytes] = []

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self.tls is None:
            return connection, address
        # the handshake happens in the request's own thread (finish_request), so a client
        # that refuses the certificate cannot stall the accept loop
        return self.tls.wrap_socket(connection, server_side=True,
                                    do_handshake_on_connect=False), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            try:
                request.settimeout(10)
                request.do_handshake()
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class JsonBridge:
    """A running bridge: ``url`` is its base URL (https with the PyKMIP run's server
    certificate, trusted by ``pykmip.client.ca``). ``token`` None and ``client_ca`` set: clients
    authenticate with a certificate from that CA instead."""

    def __init__(self, pykmip: PyKmipServer, token: str | None, *,
                 version: str = "5.20.0 (bridge)", client: ClientFiles | None = None,
                 tls: bool = True, client_ca: Path | None = None) -> None:
        self.bridge = Bridge(pykmip, client or pykmip.client, version)
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(Path(pykmip.folder) / "server.pem"),
                                    str(Path(pykmip.folder) / "server.key"))
            if client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(str(client_ca))
        self.server = _BridgeServer(self.bridge, token, context)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[bytes]:
        """Every JSON body posted to /kmip/2_1, in order."""
        return self.server.requests

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.bridge.close()
