"""What ``syncd kms test`` runs: every capability syncd needs from the KMS, proved on a
throwaway key pair, each operation timed.

connect (and authenticate), create (RSA 2048), sign (verified with the returned public key by
``cryptography``), wrap (kaclsData, server-side or client-side), unwrap (with the KACLS key,
client-side only: the key must be the key pair's, in ``kacls.private_key_format``), the issuing
CA's key (signs, verified with the issuer certificate), revoke, destroy. A failing operation
is recorded with its cause and the next ones still run where they can; the throwaway key is
revoked and destroyed whatever happened. It works over the KeyManager interface only, so the
same probe runs against every backend.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.credentials.issuers import IssuingCA, signature_verifies
from syncd.errors import KMSError
from syncd.kms.base import KeyManager, KeyRef, PrivateKeyFormat
from syncd.kms.kacls import MAX_KACLS_DATA, unwrap_private_key

PROBE_BITS = 2048
Result = Literal["ok", "failed", "skipped"]


@dataclass
class ProbeRow:
    operation: str
    result: Result
    milliseconds: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "result": self.result,
            "milliseconds": self.milliseconds,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ProbeSettings:
    key_format: PrivateKeyFormat
    """``kacls.private_key_format``: what the unwrapped kaclsData must hold."""
    kms_key_id: str
    """``kacls.kms_key_id``: the KMS's wrapping key, named when the KMS wraps."""
    wrapping_key: bytes | None
    """The KACLS key (client-side wrapping), to unwrap with; None when not configured."""
    issuer: IssuingCA | None
    issuer_label: str
    hash_name: Literal["sha256", "sha384", "sha512"] = "sha256"


@dataclass
class ProbeReport:
    backend: str
    kms: str
    rows: list[ProbeRow] = field(default_factory=list)
    wrapping: str | None = None
    """server or client, once known."""
    signing: str | None = None
    """sign or certify, once known."""

    @property
    def ok(self) -> bool:
        return all(row.result != "failed" for row in self.rows)

    @property
    def failures(self) -> list[ProbeRow]:
        return [row for row in self.rows if row.result == "failed"]


def throwaway_label(now: datetime | None = None) -> str:
    """A label no other key has: ``syncd-kms-test:<host>:<time>:<random>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"syncd-kms-test:{socket.gethostname()}:{stamp}:{os.urandom(4).hex()}"


def wrapping_mode(kms: KeyManager) -> str | None:
    """server (the KMS wraps kaclsData) or client (syncd wraps with kacls.wrapping_key); None
    while the backend has not found out (kmip, server_side_wrap auto, before a wrap)."""
    mode = getattr(kms, "wrapping_mode", None)
    if not callable(mode):
        return "client"
    found = mode()
    return None if found is None else str(found)


def signing_mode(kms: KeyManager) -> str:
    """sign (KMIP Sign over the to-be-signed bytes) or certify (KMIP Certify)."""
    mode = getattr(kms, "signing_mode", None)
    return str(mode()) if callable(mode) else "sign"


def describe_kms(kms: KeyManager) -> str:
    """The KMS as its errors name it (``KMIP server host:5696``), else the backend's name."""
    for owner in (kms, getattr(kms, "transport", None)):
        describe = getattr(owner, "describe", None)
        if callable(describe):
            return str(describe())
    return f"{kms.name} KMS"


def describe_wrapping(mode: str, kms_key_id: str) -> str:
    if mode == "server":
        return f"server-side (KMS wraps with {kms_key_id})"
    return "client-side (kacls.wrapping_key)"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, KMSError) or type(error).__module__.startswith("syncd"):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def der_format(der: bytes) -> PrivateKeyFormat | None:
    """pkcs1 or pkcs8: how ``der`` holds an RSA private key (None: neither)."""
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    none = serialization.NoEncryption()
    encoding = serialization.Encoding.DER
    if der == key.private_bytes(encoding, serialization.PrivateFormat.TraditionalOpenSSL, none):
        return "pkcs1"
    if der == key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, none):
        return "pkcs8"
    return None


class _Skip(Exception):
    """The operation does not apply here; its message says why."""


class _Probe:
    """The report being written, and the clock that times each operation."""

    def __init__(self, report: ProbeReport, clock: Callable[[], float]) -> None:
        self.report = report
        self.clock = clock

    def skip(self, operation: str, why: str) -> None:
        self.report.rows.append(ProbeRow(operation, "skipped", None, why))


def _attempt(probe: _Probe, operation: str, body: Callable[[list[str]], None]) -> bool:
    """Run and time one operation; ``body`` appends its detail. False when it failed (its
    cause is the row's detail, on one line); a ``_Skip`` records it as skipped."""
    detail: list[str] = []
    started = probe.clock()
    try:
        body(detail)
    except _Skip as skip:
        probe.skip(operation, str(skip))
        return True
    except Exception as error:
        elapsed = round((probe.clock() - started) * 1000)
        probe.report.rows.append(ProbeRow(operation, "failed", elapsed, _one_line(error)))
        return False
    elapsed = round((probe.clock() - started) * 1000)
    probe.report.rows.append(ProbeRow(operation, "ok", elapsed, "; ".join(detail)))
    return True


def run_probe(
    connect: Callable[[], KeyManager],
    issuer_kms: Callable[[str], KeyManager],
    settings: ProbeSettings,
    *,
    label: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeReport:
    """Prove each capability; ``connect`` opens the configured backend, ``issuer_kms`` the
    one holding the issuer's key (by its recorded backend name)."""
    report = ProbeReport(backend="?", kms="?")
    probe = _Probe(report, clock)
    label = label or throwaway_label()
    holder: list[KeyManager] = []

    def do_connect(detail: list[str]) -> None:
        kms = connect()
        holder.append(kms)
        report.backend, report.kms = kms.name, describe_kms(kms)
        kms.locate(label)  # a request the KMS must authenticate
        detail.append(f"{report.kms} answered a Locate")

    if not _attempt(probe, "connect", do_connect):
        for operation in ("create", "sign", "wrap", "unwrap", "issuer", "revoke", "destroy"):
            probe.skip(operation, "not connected")
        return report
    kms = holder[0]
    report.signing = signing_mode(kms)
    created: list[KeyRef] = []
    try:
        _run_key_operations(probe, kms, settings, label, created)
        report.wrapping = wrapping_mode(kms)
        _attempt(probe, "issuer", lambda detail: _issuer(kms, issuer_kms, settings, detail))
    finally:
        _dispose(probe, kms, created)
    return report


def _run_key_operations(
    probe: _Probe, kms: KeyManager, settings: ProbeSettings, label: str, created: list[KeyRef]
) -> None:
    def create(detail: list[str]) -> None:
        ref = kms.create_key_pair(label, PROBE_BITS)
        created.append(ref)
        public = f" (public {ref.public_key_id})" if ref.public_key_id != ref.private_key_id else ""
        detail.append(f"RSA {PROBE_BITS} key pair {ref.private_key_id}{public}")

    if not _attempt(probe, "create", create):
        for operation in ("sign", "wrap", "unwrap"):
            probe.skip(operation, "no throwaway key")
        return
    ref = created[0]

    def sign(detail: list[str]) -> None:
        if signing_mode(kms) == "certify":
            raise _Skip("the KMS offers no KMIP Sign: certificates are made with KMIP Certify")
        challenge = b"syncd kms test " + os.urandom(32)
        signature = kms.sign(ref.private_key_id, challenge, "sha256")
        public_key = kms.public_key(ref.public_key_id)
        if not signature_verifies(public_key, signature, challenge, "sha256"):
            raise KMSError("the signature does not verify with the key pair's public key")
        detail.append("RSA PKCS#1 v1.5 SHA-256, verified with the public key")

    _attempt(probe, "sign", sign)
    wrapped: list[str] = []

    def wrap(detail: list[str]) -> None:
        kacls_data = kms.wrapped_private_key(ref.private_key_id, settings.key_format)
        if len(kacls_data) > MAX_KACLS_DATA:
            raise KMSError(f"kaclsData is {len(kacls_data)} bytes; Gmail accepts at most 8 KiB")
        wrapped.append(kacls_data)
        mode = describe_wrapping(wrapping_mode(kms) or "client", settings.kms_key_id)
        detail.append(f"{mode}, {settings.key_format}, {len(kacls_data)} bytes of kaclsData")

    if not _attempt(probe, "wrap", wrap):
        probe.skip("unwrap", "nothing wrapped")
        return

    def unwrap(detail: list[str]) -> None:
        if wrapping_mode(kms) == "server":
            raise _Skip("server-side: the KACLS key stays in the KMS, which unwraps for Gmail")
        if settings.wrapping_key is None:
            raise KMSError("kacls.wrapping_key_file: not set; cannot unwrap kaclsData")
        der = unwrap_private_key(wrapped[0], settings.wrapping_key)
        found = der_format(der)
        if found != settings.key_format:
            raise KMSError(
                f"kaclsData holds {found or 'no RSA private key'}, not "
                f"{settings.key_format} (kacls.private_key_format)"
            )
        key = serialization.load_der_private_key(der, password=None)
        if _spki(key.public_key()) != _spki(kms.public_key(ref.public_key_id)):
            raise KMSError("kaclsData holds another key than the key pair's")
        detail.append(f"with the KACLS key: {found}, the key pair's private key")

    _attempt(probe, "unwrap", unwrap)


def _issuer(
    kms: KeyManager,
    issuer_kms: Callable[[str], KeyManager],
    settings: ProbeSettings,
    detail: list[str],
) -> None:
    issuer = settings.issuer
    if issuer is None:
        raise _Skip(f"no issuing CA imported (ca.label {settings.issuer_label})")
    holder = issuer_kms(issuer.kms_backend)
    key_id = issuer.kms_private_key_id
    where = f"issuer {issuer.label!r} key {key_id} ({holder.name})"
    certificate_key = issuer.certificate.public_key()
    if signing_mode(holder) == "certify":
        if _spki(holder.public_key(key_id)) != _spki(certificate_key):
            raise KMSError(f"{where}: its public key is not the issuer certificate's")
        detail.append(f"{where}: matches the issuer certificate; signs with KMIP Certify")
        return
    challenge = b"syncd kms test issuer " + os.urandom(32)
    signature = holder.sign(key_id, challenge, settings.hash_name)
    if not signature_verifies(certificate_key, signature, challenge, settings.hash_name):
        raise KMSError(f"{where}: its signature does not verify with the issuer certificate")
    detail.append(f"{where}: signs, verified with the issuer certificate")


def _dispose(probe: _Probe, kms: KeyManager, created: list[KeyRef]) -> None:
    """Revoke and destroy the throwaway key, whatever happened before."""
    if not created:
        probe.skip("revoke", "no throwaway key")
        probe.skip("destroy", "no throwaway key")
        return
    key_id = created[0].private_key_id

    def revoke(detail: list[str]) -> None:
        kms.revoke(key_id, "syncd kms test")
        detail.append(f"key {key_id}")

    def destroy(detail: list[str]) -> None:
        kms.destroy(key_id)
        if any(ref.private_key_id == key_id for ref in kms.locate(created[0].label)):
            raise KMSError(f"key {key_id} is still located after Destroy")
        detail.append(f"key {key_id}; no longer located")

    _attempt(probe, "revoke", revoke)
    _attempt(probe, "destroy", destroy)
