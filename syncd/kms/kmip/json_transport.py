"""KmipTransport over Cosmian KMS's HTTP interface: JSON TTLV posted to ``<url>/kmip/2_1``.

One keep-alive HTTP(S) connection per worker thread; TLS verified against ``kms.kmip.ca_file``
(or the system's CAs) unless ``verify_tls: false``; a bearer token (``token``/``token_file``/
``token_env``) and/or a client certificate. Labels are Cosmian tags, as its CLI sets them: a
key pair's private key carries the label and the system tag ``_sk``, its public key ``_pk``,
and each points to the other with a Link. The server's generation (``GET /version``, once)
picks the message shapes (:class:`~syncd.kms.kmip.json_ttlv.Dialect`).

Cosmian answers a refused operation with an HTTP error status and a plain-text reason;
:func:`error_for` turns that into syncd's errors, one line naming the KMS, the operation and
the object.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives import serialization

from syncd.config import KmipConfig, read_secret
from syncd.errors import ConfigError, KMSError, KMSRefusedError, KMSUnavailableError
from syncd.kms.base import HashName, PrivateKeyFormat
from syncd.kms.kmip import json_codec as jc
from syncd.kms.kmip import json_ttlv as jt
from syncd.kms.kmip.transport import CertifyRequest, KmipPair, NotSupportedByServer

T = TypeVar("T")
WHERE = "kms.kmip"
ENDPOINT = "/kmip/2_1"
MAX_REASON = 240
_STATES = {
    "Active": "active", "PreActive": "pre-active", "Deactivated": "deactivated",
    "Compromised": "compromised", "Destroyed": "destroyed",
    "Destroyed_Compromised": "destroyed-compromised",
}
_GONE = ("destroyed", "destroyed-compromised")
_REVOKED = ("deactivated", "compromised", *_GONE)


# --- errors (pure) -----------------------------------------------------------------------------


def _one_line(body: str) -> str:
    line = " ".join(body.split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def error_for(kms: str, operation: str, obj: str, status: int, body: str) -> KMSError:
    """The syncd error for Cosmian's answer ``status``/``body`` to ``operation`` on ``obj``.

    401 authentication refused, 403 permission denied, 404 "Route not supported: Operation: X"
    (a release without X) or a missing endpoint, 422 with Cosmian's reason (not found, not
    supported, invalid...), 5xx unavailable (retried)."""
    reason = _one_line(body)
    head = f"{kms}: {operation} {obj}".rstrip()
    if status >= 500:
        return KMSUnavailableError(f"{head} failed: server error HTTP {status} ({reason})")
    if status == 401:
        return KMSRefusedError(f"{head} refused: authentication refused ({reason})")
    if status == 403:
        return KMSRefusedError(f"{head} refused: permission denied ({reason})")
    if status == 404 and "Route not supported" in reason:
        return NotSupportedByServer(f"{head} refused: not supported by this server ({reason})")
    if status == 404:
        return KMSRefusedError(f"{head} refused: HTTP 404, no Cosmian KMIP endpoint at this URL "
                               f"({reason})")
    lowered = reason.lower()
    if "not_supported" in lowered or "not supported" in lowered:
        return NotSupportedByServer(f"{head} refused: not supported by this server ({reason})")
    if "not_found" in lowered or "not found" in lowered:
        return KMSRefusedError(f"{head} refused: not found or not permitted ({reason})")
    if "access denied" in lowered or "unauthorized" in lowered:
        return KMSRefusedError(f"{head} refused: permission denied ({reason})")
    return KMSRefusedError(f"{head} refused: HTTP {status} ({reason})")


def _is_not_found(error: KMSError) -> bool:
    return isinstance(error, KMSRefusedError) and "not found" in str(error)


# --- connection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str


def _endpoint(url: str) -> _Endpoint:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{WHERE}.url", f"{url!r} is not an http(s) URL")
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        raise ConfigError(f"{WHERE}.url", f"{url!r} has an invalid port") from None
    return _Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")


def tls_context(config: KmipConfig) -> ssl.SSLContext:
    """Verification against ca_file (or the system's), the client certificate if set."""
    try:
        context = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{WHERE}.ca_file", f"cannot load CA certificates: {exc}") from None
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.client_certificate_file is not None:
        try:
            context.load_cert_chain(
                str(config.client_certificate_file),
                str(config.client_key_file) if config.client_key_file is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{WHERE}.client_certificate_file",
                              f"cannot load the client certificate and key: {exc}") from None
    return context


class JsonTransport:
    """Cosmian KMS over JSON TTLV (see the module docstring). Thread-safe."""

    def __init__(self, config: KmipConfig) -> None:
        if not config.url:
            raise ConfigError(f"{WHERE}.url", "required when kms.kmip.transport is json")
        self._url = config.url.rstrip("/")
        self._endpoint = _endpoint(self._url)
        self._timeout = float(config.timeout)
        self._context = tls_context(config) if self._endpoint.scheme == "https" else None
        token = read_secret(config, "token", WHERE)
        if token and self._endpoint.scheme == "http" and not _loopback(self._endpoint.host):
            raise ConfigError(f"{WHERE}.url", "a bearer token is never sent over plain http to "
                              "another host; use the KMS's https URL")
        self._authorization = f"Bearer {token.decode().strip()}" if token else None
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._dialect: jt.Dialect | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"Cosmian KMS {self._url}"

    def _new_connection(self) -> http.client.HTTPConnection:
        end = self._endpoint
        connection: http.client.HTTPConnection
        if self._context is not None:
            connection = http.client.HTTPSConnection(
                end.host, end.port, timeout=self._timeout, context=self._context
            )
        else:
            connection = http.client.HTTPConnection(end.host, end.port, timeout=self._timeout)
        with self._lock:
            self._connections.append(connection)
        return connection

    def _exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        """One HTTP exchange on this thread's connection. A connection the server closed while
        idle (keep-alive) is replaced once; nothing was processed on it."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._authorization:
            headers["Authorization"] = self._authorization
        for attempt in (1, 2):
            connection: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            reused = connection is not None
            if connection is None:
                connection = self._new_connection()
                self._local.conn = connection
            try:
                connection.request(method, self._endpoint.base_path + path, body, headers)
                response = connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self._drop()
                return response.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        connection = getattr(self._local, "conn", None)
        self._local.conn = None
        if connection is not None:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def _call(self, method: str, path: str, body: bytes | None, operation: str,
              obj: str) -> tuple[int, bytes]:
        """The exchange, with network and TLS failures turned into syncd errors."""
        head = f"{self.describe()}: {operation} {obj}".rstrip()
        try:
            return self._exchange(method, path, body)
        except ssl.SSLCertVerificationError as exc:
            raise KMSRefusedError(f"{head} refused: TLS: the server certificate is not trusted "
                                  f"({exc.verify_message}); check kms.kmip.ca_file") from None
        except ssl.SSLError as exc:
            raise KMSRefusedError(f"{head} refused: TLS handshake failed "
                                  f"({exc.reason or exc})") from None
        except TimeoutError:
            raise KMSUnavailableError(f"{head} failed: no answer within {self._timeout:g} s") \
                from None
        except ConnectionRefusedError:
            raise KMSUnavailableError(f"{head} failed: unreachable (connection refused)") \
                from None
        except socket.gaierror as exc:
            raise KMSUnavailableError(f"{head} failed: unreachable (host name not resolved: "
                                      f"{exc.strerror})") from None
        except (http.client.HTTPException, OSError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else (
                type(exc).__name__)
            raise KMSUnavailableError(f"{head} failed: connection lost ({detail})") from None

    def dialect(self, operation: str = "version query", obj: str = "") -> jt.Dialect:
        """The server's generation, asked once (``GET /version``); 5.x if it does not say.
        A failure is reported as one of ``operation`` on ``obj`` (what the caller was doing)."""
        if self._dialect is not None:
            return self._dialect
        status, body = self._call("GET", "/version", None, operation, obj)
        if status in (401, 403):
            raise error_for(self.describe(), operation, obj, status,
                            body.decode(errors="replace"))
        found = None
        if status == 200:
            try:
                answer = json.loads(body)
            except json.JSONDecodeError:
                answer = body.decode(errors="replace")
            found = jt.parse_version(str(answer))
        self._dialect = found or jt.V5
        return self._dialect

    def _post(self, request: jc.Item, obj: str) -> jc.Item:
        operation = request.tag
        status, body = self._call("POST", ENDPOINT, jc.dumps(request), operation, obj)
        if status != 200:
            raise error_for(self.describe(), operation, obj, status,
                            body.decode(errors="replace"))
        try:
            return jc.loads(body)
        except jc.TtlvError as exc:
            raise KMSRefusedError(f"{self.describe()}: {operation} {obj} failed: the answer is "
                                  f"not Cosmian JSON TTLV ({exc})") from None

    def _read(self, operation: str, obj: str, reader: Callable[[jc.Item], T],
              response: jc.Item) -> T:
        try:
            return reader(response)
        except jc.TtlvError as exc:
            raise KMSRefusedError(f"{self.describe()}: {operation} {obj} failed: unexpected "
                                  f"answer ({exc})") from None

    # -- attributes ----------------------------------------------------------------------------

    def _attributes(self, key_id: str) -> jt.ObjectAttributes:
        response = self._post(jt.get_attributes(key_id), f"of key {key_id}")
        return self._read("GetAttributes", f"of key {key_id}", jt.read_attributes, response)

    # -- KmipTransport ---------------------------------------------------------------------------

    def create_key_pair(self, label: str, bits: int) -> KmipPair:
        now = dt.datetime.now(dt.UTC)
        obj = f"RSA {bits} for {label}"
        request = jt.create_key_pair(self.dialect("CreateKeyPair", obj), label, bits, now)
        response = self._post(request, obj)
        private_id, public_id = self._read("CreateKeyPair", obj, jt.read_key_pair, response)
        return KmipPair(private_id, public_id, "active")

    def register_private_key(self, label: str, pkcs8_der: bytes, public_der: bytes) -> KmipPair:
        now = dt.datetime.now(dt.UTC)
        obj = f"public key for {label}"
        dialect = self.dialect("Import", obj)
        response = self._post(jt.import_key(dialect, label, "PublicKey", public_der, now), obj)
        public_id = self._read("Import", obj, _import_id, response)
        obj = f"private key for {label}"
        response = self._post(
            jt.import_key(dialect, label, "PrivateKey", pkcs8_der, now, public_key_id=public_id),
            obj,
        )
        private_id = self._read("Import", obj, _import_id, response)
        return KmipPair(private_id, public_id, "active")

    def _get(self, request: jc.Item, key_id: str) -> jt.GotObject:
        obj = f"of key {key_id}"
        return self._read("Get", obj, jt.read_get, self._post(request, obj))

    def public_key_der(self, key_id: str) -> bytes:
        attributes = self._attributes(key_id)
        public_id = key_id
        if attributes.object_type == "PrivateKey":
            linked = attributes.links.get("PublicKeyLink")
            if linked is None:
                raise KMSRefusedError(f"{self.describe()}: Get of the public key of {key_id} "
                                      "refused: the private key has no PublicKeyLink")
            public_id = linked
        got = self._get(jt.get(public_id, "spki"), public_id)
        return self._spki(got, public_id)

    def _spki(self, got: jt.GotObject, key_id: str) -> bytes:
        try:
            key = serialization.load_der_public_key(got.data)
        except ValueError:
            raise KMSRefusedError(f"{self.describe()}: Get of key {key_id} failed: the answer "
                                  "is not a SubjectPublicKeyInfo") from None
        return key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)

    def private_key_der(self, key_id: str, key_format: PrivateKeyFormat) -> bytes:
        got = self._get(jt.get(key_id, key_format), key_id)
        if got.object_type != "PrivateKey" or got.wrapped:
            raise KMSRefusedError(f"{self.describe()}: Get of key {key_id} refused: it is a "
                                  f"{'wrapped ' if got.wrapped else ''}{got.object_type}, "
                                  "not a private key")
        return got.data

    def wrapped_private_key(
        self, key_id: str, key_format: PrivateKeyFormat, wrapping_key_id: str
    ) -> bytes:
        dialect = self.dialect("Get", f"of key {key_id}")
        if key_format != dialect.wrapped_format():
            version = ".".join(str(part) for part in dialect.version)
            raise NotSupportedByServer(
                f"{self.describe()}: Get of key {key_id} wrapped by {wrapping_key_id}: "
                f"Cosmian KMS {version} wraps private keys as "
                f"{dialect.wrapped_format().upper().replace('PKCS', 'PKCS#')} only, "
                f"not {key_format.upper().replace('PKCS', 'PKCS#')}"
            )
        got = self._get(jt.get_wrapped(key_id, wrapping_key_id), key_id)
        if not got.wrapped or len(got.data) < 12 + 16 + 1:
            raise KMSRefusedError(f"{self.describe()}: Get of key {key_id} wrapped by "
                                  f"{wrapping_key_id} failed: the server returned no wrapped key")
        return got.data

    def sign(self, key_id: str, data: bytes, hash_name: HashName) -> bytes:
        if not self.dialect("Sign", f"with key {key_id}").has_sign:
            raise NotSupportedByServer(f"{self.describe()}: Sign with key {key_id}: Cosmian KMS "
                                       "4.x has no Sign; use kms.kmip.signing: certify")
        obj = f"with key {key_id}"
        response = self._post(jt.sign(key_id, data, hash_name), obj)
        return self._read("Sign", obj, jt.read_signature, response)

    def certify(self, request: CertifyRequest) -> bytes:
        try:
            subject = jt.subject_fields(request.subject)
        except jc.TtlvError as exc:
            raise KMSRefusedError(f"{self.describe()}: Certify of key {request.public_key_id} "
                                  f"refused: {exc}") from None
        obj = f"of key {request.public_key_id} by {request.issuer_private_key_id}"
        certify = jt.certify(
            self.dialect("Certify", obj), request.public_key_id, request.issuer_private_key_id,
            request.issuer_certificate_id, subject, request.extensions_conf,
            request.validity_days, request.label,
        )
        response = self._post(certify, obj)
        certificate_id = self._read("Certify", obj, _certify_id, response)
        got = self._get(jt.get(certificate_id, "x509"), certificate_id)
        if got.object_type != "Certificate":
            raise KMSRefusedError(f"{self.describe()}: Get of certificate {certificate_id} "
                                  f"failed: the server returned a {got.object_type}")
        return got.data

    def _locate(self, tags: list[str]) -> list[str]:
        obj = f"of {tags_label(tags)}"
        response = self._post(jt.locate(self.dialect("Locate", obj), tags), obj)
        return self._read("Locate", obj, jt.read_locate, response)

    def locate(self, label: str) -> list[KmipPair]:
        pairs: list[tuple[dt.datetime | None, int, KmipPair]] = []
        private_ids = self._locate([label, jt.SYSTEM_TAG_PRIVATE])
        unlinked_public: list[str] | None = None
        for index, private_id in enumerate(private_ids):
            try:
                attributes = self._attributes(private_id)
            except KMSRefusedError as exc:
                if _is_not_found(exc):  # destroyed since the Locate
                    continue
                raise
            state = _STATES.get(attributes.state or "Active", (attributes.state or "").lower())
            if state in _GONE:
                continue
            public_id = attributes.links.get("PublicKeyLink")
            if public_id is None:
                if unlinked_public is None:
                    unlinked_public = self._locate([label, jt.SYSTEM_TAG_PUBLIC])
                public_id = unlinked_public.pop(0) if unlinked_public else ""
            pairs.append((attributes.initial_date, index, KmipPair(private_id, public_id, state)))
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        pairs.sort(key=lambda item: (item[0] or far, item[1]))
        return [pair for _, _, pair in pairs]

    def _halves(self, key_id: str) -> list[tuple[str, str]]:
        """(id, state) of the key and its linked other half; [] when the key is gone."""
        try:
            attributes = self._attributes(key_id)
        except KMSRefusedError as exc:
            if _is_not_found(exc):
                return []
            raise
        halves = [(key_id, _STATES.get(attributes.state or "", "active"))]
        for link in ("PublicKeyLink", "PrivateKeyLink"):
            other = attributes.links.get(link)
            if other is None:
                continue
            try:
                other_attributes = self._attributes(other)
            except KMSRefusedError as exc:
                if _is_not_found(exc):
                    continue
                raise
            halves.append((other, _STATES.get(other_attributes.state or "", "active")))
        return halves

    def revoke(self, key_id: str, reason: str) -> None:
        halves = self._halves(key_id)
        if not halves:
            raise KMSRefusedError(f"{self.describe()}: Revoke of key {key_id} refused: "
                                  "not found or not permitted")
        for uid, state in halves:
            if state in _REVOKED:
                continue
            self._post(jt.revoke(self.dialect("Revoke", f"of key {uid}"), uid, reason),
                       f"of key {uid}")

    def destroy(self, key_id: str) -> None:
        for uid, state in self._halves(key_id):
            if state in _GONE:
                continue
            try:
                self._post(jt.destroy(uid), f"of key {uid}")
            except KMSRefusedError as exc:
                if not _is_not_found(exc):
                    raise

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


def _import_id(response: jc.Item) -> str:
    return jt.read_unique_identifier(response, "ImportResponse")


def _certify_id(response: jc.Item) -> str:
    return jt.read_unique_identifier(response, "CertifyResponse")


def tags_label(tags: list[str]) -> str:
    return "tags " + jt.tags_json(tags)
