"""The test CA: syncd's rehearsal hierarchy (syncd/pki/rehearsal_ca.py) plus what only tests
and benches use, an in-memory signer over the issuing key standing in for a KMS.

Throwaway material only; nothing here is fit for production.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from syncd.pki.rehearsal_ca import (
    CAKey,
    KeyType,
    RehearsalHierarchy,
    make_intermediate,
    make_rehearsal_hierarchy,
    make_root,
    new_key,
    write_private_file,
)

__all__ = [
    "CAKey",
    "KeyType",
    "TestHierarchy",
    "make_intermediate",
    "make_root",
    "make_test_hierarchy",
    "new_key",
    "sign_with",
    "write_private_file",
]

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclasses.dataclass(frozen=True)
class TestHierarchy(RehearsalHierarchy):
    """A rehearsal hierarchy that can also sign with its intermediate key in memory."""

    __test__ = False  # not a pytest test class despite its name

    def signer(self, hash_name: str = "sha256") -> Callable[[bytes], bytes]:
        """A ``sign`` callable over the intermediate key, as a KMS would provide."""
        return sign_with(self.intermediate_key, hash_name)


def sign_with(key: CertificateIssuerPrivateKeyTypes, hash_name: str) -> Callable[[bytes], bytes]:
    """Sign with ``key``: RSA PKCS#1 v1.5 or ECDSA (DER), with the named hash."""
    algorithm = _HASHES[hash_name]()
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_key = key
        return lambda data: rsa_key.sign(data, padding.PKCS1v15(), algorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_key = key
        return lambda data: ec_key.sign(data, ec.ECDSA(algorithm))
    raise TypeError(f"cannot sign with a {type(key).__name__}")


def make_test_hierarchy(
    out_dir: Path | None = None,
    *,
    password: bytes | None = None,
    key_type: KeyType = "rsa",
    rsa_bits: int = 2048,
    organization: str = "syncd Test",
    crl_url: str | None = "http://crl.example.test/issuing.crl",
    now: dt.datetime | None = None,
    root_days: int = 3650,
    intermediate_days: int = 1825,
) -> TestHierarchy:
    """:func:`make_rehearsal_hierarchy` (same arguments and files), as a TestHierarchy."""
    made = make_rehearsal_hierarchy(
        out_dir,
        password=password,
        key_type=key_type,
        rsa_bits=rsa_bits,
        organization=organization,
        crl_url=crl_url,
        now=now,
        root_days=root_days,
        intermediate_days=intermediate_days,
    )
    fields = {field.name: getattr(made, field.name) for field in dataclasses.fields(made)}
    return TestHierarchy(**fields)
