"""A throwaway root -> issuing intermediate hierarchy to Google's profile, for rehearsals:
``syncd demo`` (and, through tests/support/testca.py, the tests and benches).

The keys are generated at call time and never meant for production. When asked to write files,
the issuer key leaves memory only inside a password-protected PKCS#12 file with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from syncd.errors import ConfigError

KeyType = Literal["rsa", "ec"]
CAKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class RehearsalHierarchy:
    """A root, the intermediate it signed, their keys, and the files written (if any)."""

    root_cert: x509.Certificate
    root_key: CAKey
    intermediate_cert: x509.Certificate
    intermediate_key: CAKey
    root_pem: Path | None = None
    intermediate_pem: Path | None = None
    issuer_p12: Path | None = None


def new_key(key_type: KeyType, rsa_bits: int = 2048) -> CAKey:
    """A fresh RSA (``rsa_bits``) or EC P-256 private key."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def make_root(key: CAKey, organization: str, now: dt.datetime,
              days: int) -> x509.Certificate:
    """A self-signed root CA certificate (SHA-256)."""
    name = _name(f"{organization} Root CA", organization)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def make_intermediate(key: CAKey, root_cert: x509.Certificate, root_key: CAKey,
                      organization: str, crl_url: str | None, now: dt.datetime,
                      days: int) -> x509.Certificate:
    """An issuing intermediate: CA:TRUE pathlen 0, keyCertSign, CRL distribution point."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{organization} S/MIME Issuing CA", organization))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), root_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
    )
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None,
                                       None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(root_key, hashes.SHA256())


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only (mode 0600), replacing it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def make_rehearsal_hierarchy(
    out_dir: Path | None = None,
    *,
    password: bytes | None = None,
    key_type: KeyType = "rsa",
    rsa_bits: int = 2048,
    organization: str = "syncd Rehearsal",
    crl_url: str | None = "http://crl.example.test/issuing.crl",
    now: dt.datetime | None = None,
    root_days: int = 3650,
    intermediate_days: int = 1825,
) -> RehearsalHierarchy:
    """Generate a root and an issuing intermediate; with ``out_dir``, also write them there.

    Files written: ``root.pem``, ``intermediate.pem`` and ``issuer.p12`` (intermediate key and
    certificate plus the root, encrypted with ``password``, mode 0600).
    """
    if out_dir is not None and not password:
        raise ConfigError(str(out_dir), "a password is needed to write the issuer PKCS#12 file")
    now = now or dt.datetime.now(dt.UTC)
    root_key = new_key(key_type, rsa_bits)
    root_cert = make_root(root_key, organization, now, root_days)
    inter_key = new_key(key_type, rsa_bits)
    inter_cert = make_intermediate(inter_key, root_cert, root_key, organization, crl_url, now,
                                   intermediate_days)
    hierarchy = RehearsalHierarchy(root_cert, root_key, inter_cert, inter_key)
    if out_dir is None or password is None:
        return hierarchy
    out_dir.mkdir(parents=True, exist_ok=True)
    root_pem = out_dir / "root.pem"
    inter_pem = out_dir / "intermediate.pem"
    issuer_p12 = out_dir / "issuer.p12"
    root_pem.write_bytes(root_cert.public_bytes(serialization.Encoding.PEM))
    inter_pem.write_bytes(inter_cert.public_bytes(serialization.Encoding.PEM))
    bundle = pkcs12.serialize_key_and_certificates(
        b"syncd issuer", inter_key, inter_cert, [root_cert],
        serialization.BestAvailableEncryption(password),
    )
    write_private_file(issuer_p12, bundle)
    return RehearsalHierarchy(root_cert, root_key, inter_cert, inter_key, root_pem, inter_pem,
                         issuer_p12)
