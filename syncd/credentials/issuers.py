"""Issuing CAs: importing one into the KMS and the state store, and loading it to sign.

``syncd ca import`` is syncd's equivalent of importing the issuer chain into Cosmian KMS: the
issuer's private key goes into the KMS (labelled ``issuer:<label>``) and never comes out; its
certificate and the chain above it go into the ``issuers`` table. A chain Google would refuse
is refused here, before anything is stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.errors import CANotImportedError, CertificateError, KMSError, KMSUnavailableError
from syncd.kms.base import HashName, KeyManager, KeyRef
from syncd.pki.chain import (
    describe,
    fingerprint,
    is_self_signed,
    load_pem_chain,
    order_chain,
)
from syncd.pki.pkcs12 import key_matches_certificate, load_pkcs12
from syncd.pki.validate import issuer_violations, issuer_warnings
from syncd.state.models import Issuer


def _pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


@dataclass(frozen=True)
class IssuingCA:
    """An imported issuer, ready to sign: its certificate, the chain above it, its KMS key."""

    label: str
    certificate: x509.Certificate
    chain_above: list[x509.Certificate]
    kms_private_key_id: str
    imported_at: datetime | None = None
    kms_backend: str = "local"
    """The KMS backend holding the issuer's key (``kms.backend`` when it was imported)."""

    @cached_property  # read for every certificate issued; is_self_signed checks signatures
    def intermediates(self) -> list[x509.Certificate]:
        """What a leaf's PKCS#7 carries after the leaf: the issuer and any CA below the root."""
        return [self.certificate, *(c for c in self.chain_above if not is_self_signed(c))]

    @cached_property
    def root(self) -> x509.Certificate | None:
        tops = [c for c in self.chain_above if is_self_signed(c)]
        return tops[0] if tops else None

    def signer(self, kms: KeyManager, hash_name: HashName) -> _Signer:
        return _Signer(kms, self.kms_private_key_id, hash_name)

    def describe(self) -> dict[str, Any]:
        cert = self.certificate
        return {
            "label": self.label,
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "sha256_fingerprint": fingerprint(cert),
            "not_before": cert.not_valid_before_utc,
            "not_after": cert.not_valid_after_utc,
            "kms_private_key_id": self.kms_private_key_id,
            "kms_backend": self.kms_backend,
            "chain": [
                {"subject": c.subject.rfc4514_string(), "sha256_fingerprint": fingerprint(c)}
                for c in self.chain_above
            ],
            "imported_at": self.imported_at,
        }


@dataclass(frozen=True)
class _Signer:
    kms: KeyManager
    key_id: str
    hash_name: HashName

    def __call__(self, tbs: bytes) -> bytes:
        return self.kms.sign(self.key_id, tbs, self.hash_name)


def _from_row(row: Issuer) -> IssuingCA:
    return IssuingCA(
        label=row.label,
        certificate=x509.load_pem_x509_certificate(row.certificate_pem.encode()),
        chain_above=load_pem_chain(row.chain_pem) if row.chain_pem.strip() else [],
        kms_private_key_id=row.kms_private_key_id,
        imported_at=row.imported_at,
        kms_backend=row.kms_backend,
    )


def load_issuer(sessions: sessionmaker[Session], label: str) -> IssuingCA:
    """The imported issuer ``label``; CANotImportedError says how to import one."""
    with sessions() as session:
        row = session.scalar(select(Issuer).where(Issuer.label == label))
        if row is None:
            raise CANotImportedError(
                f"no issuing CA labelled {label!r} has been imported "
                f"(ca.label); run `syncd ca import ISSUER.p12 --label {label}`"
            )
        return _from_row(row)


def list_issuers(sessions: sessionmaker[Session]) -> list[IssuingCA]:
    with sessions() as session:
        return [_from_row(row) for row in session.scalars(select(Issuer).order_by(Issuer.label))]


def _existing_key(kms: KeyManager, kms_label: str, certificate: x509.Certificate) -> KeyRef | None:
    """A key an interrupted earlier import already stored for this certificate."""
    wanted = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for ref in kms.locate(kms_label):
        stored = kms.public_key(ref.public_key_id).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if ref.state == "active" and stored == wanted:
            return ref
    return None


def _extra_chain(pem: bytes, where: str) -> list[x509.Certificate]:
    """The certificates of the --chain file; CertificateError naming ``where`` otherwise."""
    try:
        certificates = load_pem_chain(pem)
    except CertificateError as error:
        raise CertificateError(f"{where}: {error}") from None
    if not certificates:
        raise CertificateError(f"{where}: holds no PEM certificate")
    return certificates


def _checked_path(
    certificate: x509.Certificate,
    bundled: list[x509.Certificate],
    extra: list[x509.Certificate],
    now: datetime,
    where: str,
    chain_where: str,
) -> tuple[list[x509.Certificate], list[str]]:
    """The chain above the issuer, refused if Google would refuse it; and the warnings.

    A certificate of ``extra`` (the --chain file) which is not on the issuer's path is
    refused (it was given to be used); one ``bundled`` (the PKCS#12 file) merely carries is
    left out with a warning.
    """
    ordered = order_chain(certificate, [*bundled, *extra])
    chain_above = ordered[1:]
    violations = issuer_violations(certificate, chain_above, now)
    if violations:
        raise CertificateError(f"{where}: issuer refused", violations)
    strays = off_chain(ordered, extra)
    if strays:
        raise CertificateError(
            f"{chain_where}: {strays[0]} does not link to the issuer "
            f"{describe(certificate)} (neither its issuer nor above it); refused"
        )
    warnings = [
        f"{where}: {stray} does not link to the issuer; left out"
        for stray in off_chain(ordered, bundled)
    ]
    return chain_above, [*warnings, *issuer_warnings(certificate)]


def _refuse_taken(sessions: sessionmaker[Session], label: str, replace: bool) -> None:
    with sessions() as session:
        existing = session.scalar(select(Issuer).where(Issuer.label == label))
        if existing is not None and not replace:
            raise CertificateError(
                f"an issuing CA labelled {label!r} is already imported "
                f"({existing.subject}); use --replace or another --label"
            )


def _store(
    sessions: sessionmaker[Session],
    label: str,
    certificate: x509.Certificate,
    chain_above: list[x509.Certificate],
    key_id: str,
    backend: str,
    now: datetime,
) -> IssuingCA:
    with sessions.begin() as session:
        row = session.scalar(select(Issuer).where(Issuer.label == label))
        if row is None:
            row = Issuer(label=label)
            session.add(row)
        row.kms_private_key_id = key_id
        row.kms_backend = backend
        row.certificate_pem = _pem([certificate])
        row.chain_pem = _pem(chain_above)
        row.subject = certificate.subject.rfc4514_string()
        row.fingerprint_sha256 = fingerprint(certificate)
        row.not_before = certificate.not_valid_before_utc
        row.not_after = certificate.not_valid_after_utc
        row.imported_at = now
        session.flush()
        return _from_row(row)


def import_issuer(
    sessions: sessionmaker[Session],
    kms: KeyManager,
    *,
    label: str,
    pkcs12_data: bytes,
    password: bytes | None,
    extra_chain_pem: bytes | None,
    now: datetime,
    where: str,
    replace: bool = False,
    chain_where: str = "--chain",
) -> tuple[IssuingCA, list[str]]:
    """Validate and import an issuer from PKCS#12 (its key into ``kms``, the configured
    backend); returns it and any warnings.

    ``where`` names the PKCS#12 file in messages, ``chain_where`` the extra chain's option and
    file (``--chain FILE``).
    """
    key, certificate, bundled = load_pkcs12(pkcs12_data, password, where)
    if not key_matches_certificate(key, certificate):
        raise CertificateError(f"{where}: the private key does not match the certificate")
    extra = _extra_chain(extra_chain_pem, chain_where) if extra_chain_pem is not None else []
    chain_above, warnings = _checked_path(certificate, bundled, extra, now, where, chain_where)
    _refuse_taken(sessions, label, replace)
    kms_label = f"issuer:{label}"
    ref = _existing_key(kms, kms_label, certificate) or kms.import_private_key(
        kms_label, _issuer_key(key)
    )
    issuer = _store(sessions, label, certificate, chain_above, ref.private_key_id, kms.name, now)
    return issuer, warnings


def _spki(key: CertificateIssuerPublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_of_key(
    public_key: CertificateIssuerPublicKeyTypes, certificates: list[x509.Certificate]
) -> x509.Certificate | None:
    """The first certificate holding ``public_key``; None when none does."""
    wanted = _spki(public_key)
    for certificate in certificates:
        if _spki(certificate.public_key()) == wanted:  # type: ignore[arg-type]
            return certificate
    return None


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def signature_verifies(
    public_key: object, signature: bytes, data: bytes, hash_name: str = "sha256"
) -> bool:
    """``signature`` over ``data`` checks out with ``public_key`` (RSA PKCS#1 v1.5, ECDSA)."""
    algorithm = _HASHES[hash_name]()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _key_certificate(
    kms: KeyManager, key_id: str, certificates: list[x509.Certificate]
) -> x509.Certificate | None:
    """The certificate of the KMS key ``key_id``: the one holding its public key; or, when the
    KMS keeps no public key object beside it (a PKCS#12 imported with the KMS's own tool may
    leave only the private key and the certificate), the one whose key verifies a signature
    the KMS key makes over a random challenge."""
    try:
        public = kms.public_key(key_id)
    except KMSUnavailableError:
        raise
    except KMSError:
        challenge = b"syncd ca import: proof of possession " + os.urandom(32)
        signature = kms.sign(key_id, challenge, "sha256")
        return next(
            (c for c in certificates if signature_verifies(c.public_key(), signature, challenge)),
            None,
        )
    return certificate_of_key(public, certificates)


def adopt_issuer(
    sessions: sessionmaker[Session],
    kms: KeyManager,
    *,
    label: str,
    private_key_id: str,
    chain_pem: bytes,
    now: datetime,
    chain_where: str,
    replace: bool = False,
) -> tuple[IssuingCA, list[str]]:
    """Adopt an issuer whose private key is already in the KMS (imported with the KMS's own
    tools): ``chain_pem`` holds its certificate and the chain above it. The certificate is
    the one holding the KMS key's public key; a chain with none is refused before anything
    is stored."""
    certificates = _extra_chain(chain_pem, chain_where)
    certificate = _key_certificate(kms, private_key_id, certificates)
    if certificate is None:
        raise CertificateError(
            f"{chain_where}: no certificate in it holds the public key of the {kms.name} KMS "
            f"key {private_key_id}; give the issuer certificate of that key (and its chain)"
        )
    others = [cert for cert in certificates if cert is not certificate]
    chain_above, warnings = _checked_path(certificate, [], others, now, chain_where, chain_where)
    _refuse_taken(sessions, label, replace)
    issuer = _store(sessions, label, certificate, chain_above, private_key_id, kms.name, now)
    return issuer, warnings


def off_chain(path: list[x509.Certificate], given: list[x509.Certificate]) -> list[str]:
    """The subjects of the ``given`` certificates that are not on ``path`` (the issuer's)."""
    return [describe(cert) for cert in given if cert not in path]


def _issuer_key(key: object) -> CertificateIssuerPrivateKeyTypes:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    raise CertificateError(f"issuer key type {type(key).__name__} is not supported; use RSA or EC")
