"""PKI fixtures: a real root -> intermediate hierarchy made at test time, and openssl.

Keys are generated for each session and written only under pytest's temporary folders.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from tests.support.testca import TestHierarchy, make_test_hierarchy

P12_PASSWORD = b"correct horse battery staple"
KEY_PASSWORD = "leaf-key-pass"
EMAIL = "alice@example.com"

OpenSSL = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def openssl() -> OpenSSL:
    """Run the real openssl binary; a missing binary fails the test (apt-get install openssl)."""
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("openssl not found on PATH; install it with: apt-get install -y openssl")

    def run(
        *args: str | Path, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, *map(str, args)],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ca")


@pytest.fixture(scope="session")
def hierarchy(ca_dir: Path) -> TestHierarchy:
    """RSA root -> intermediate (pathlen 0, CRL DP), written to ca_dir."""
    return make_test_hierarchy(ca_dir, password=P12_PASSWORD)


@pytest.fixture(scope="session")
def ec_hierarchy() -> TestHierarchy:
    return make_test_hierarchy(None, key_type="ec")


@pytest.fixture(scope="session")
def leaf_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="session")
def profile() -> LeafProfile:
    return LeafProfile(
        subject_template="CN={email},O=Example",
        crl_distribution_points=("http://crl.example.test/issuing.crl",),
        aia_ca_issuers=("http://ca.example.test/issuing.crt",),
    )


@pytest.fixture(scope="session")
def good_leaf(
    hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, profile: LeafProfile, now: dt.datetime
) -> x509.Certificate:
    return issue_leaf(
        EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert, hierarchy.signer(), profile, now
    )


@dataclass
class Workdir:
    """A temporary folder to hand certificates and (encrypted) keys to openssl."""

    path: Path
    passin: str = f"pass:{KEY_PASSWORD}"

    def pem(self, name: str, *certs: x509.Certificate) -> Path:
        target = self.path / name
        target.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
        return target

    def key(self, name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
        target = self.path / name
        target.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
            )
        )
        target.chmod(0o600)
        return target


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    return Workdir(tmp_path)
