"""The sandbox's own S/MIME rules, judged on certificates made with plain ``openssl`` commands
and uploaded through syncd's real Gmail client over HTTP; and the sandbox's independence from
syncd's validator (syncd.pki).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import GmailCSE
from tests.support.sandbox import DOMAIN, KACLS_URI, RunningSandbox, leaf_pkcs7, start_sandbox
from tests.support.testca import TestHierarchy

ALICE = f"alice@{DOMAIN}"
# openssl crl2pkcs7 keeps the file order in the SET (BER, not DER); cryptography warns.
pytestmark = pytest.mark.filterwarnings("ignore:PKCS#7 certificates could not be parsed as DER")
SANDBOX_DIR = Path(__file__).resolve().parents[2] / "syncd" / "sandbox"
TEST_KIT = "testing.py"
"""The sandbox's test kit makes certificates the way syncd does (it is a client of the
sandbox, never loaded by the server); every other module must stay clear of syncd.pki."""

LEAF_EXT = {
    "basicConstraints": "critical,CA:FALSE",
    "keyUsage": "critical,digitalSignature,nonRepudiation,keyEncipherment",
    "extendedKeyUsage": "emailProtection",
    "subjectAltName": f"email:{ALICE}",
    "subjectKeyIdentifier": "hash",
    "authorityKeyIdentifier": "keyid",
}
CA_EXT = {
    "basicConstraints": "critical,CA:TRUE,pathlen:0",
    "keyUsage": "critical,keyCertSign,cRLSign",
    "subjectKeyIdentifier": "hash",
    "authorityKeyIdentifier": "keyid",
}
CA_CONFIG = """
[ca]
default_ca = here
[here]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial.txt
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
"""


@dataclass
class OpenSSLCA:
    """A root and an issuing intermediate made with the openssl binary, and leaves on demand."""

    dir: Path
    counter: int = 0

    def run(self, *args: str | Path) -> str:
        binary = shutil.which("openssl")
        if binary is None:
            pytest.fail("openssl not found on PATH; install it with: apt-get install -y openssl")
        done = subprocess.run(
            [binary, *map(str, args)], capture_output=True, text=True, check=False, timeout=60
        )
        if done.returncode != 0:
            pytest.fail(f"openssl {' '.join(map(str, args))} failed:\n{done.stderr}")
        return done.stdout

    def path(self, name: str) -> Path:
        return self.dir / name

    def key(self, name: str, *options: str) -> Path:
        target = self.path(name)
        if not target.exists():
            self.run("genpkey", *options, "-out", target)
        return target

    def rsa(self, bits: int = 2048) -> Path:
        return self.key(
            f"rsa{bits}.key", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}"
        )

    def ec(self, curve: str) -> Path:
        return self.key(
            f"{curve}.key", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}"
        )

    def _extfile(self, extensions: dict[str, str]) -> Path:
        self.counter += 1
        target = self.path(f"ext{self.counter}.cnf")
        target.write_text("[v3]\n" + "".join(f"{k} = {v}\n" for k, v in extensions.items()))
        return target

    def _csr(self, key: Path, subject: str) -> Path:
        self.counter += 1
        target = self.path(f"req{self.counter}.csr")
        self.run("req", "-new", "-key", key, "-subj", subject, "-out", target)
        return target

    def root(self, subject: str = "/CN=OpenSSL Test Root/O=OpenSSL Test") -> Path:
        self.counter += 1
        target = self.path(f"root{self.counter}.pem")
        self.run(
            "req", "-x509", "-new", "-key", self.rsa(), "-subj", subject, "-days", "30",
            "-sha256", "-set_serial", "1",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", target,
        )
        return target

    def issue(
        self,
        subject: str,
        issuer: Path,
        *,
        key: Path | None = None,
        extensions: dict[str, str | None] | None = None,
        ca: bool = False,
        digest: str = "sha256",
        serial: str | None = None,
    ) -> Path:
        """A certificate for ``key`` (the shared RSA 2048 key by default) signed by ``issuer``
        (whose key is the shared RSA 2048 key too); ``extensions`` change the default set
        (None removes one)."""
        chosen = {**(CA_EXT if ca else LEAF_EXT), **(extensions or {})}
        kept = {k: v for k, v in chosen.items() if v is not None}
        self.counter += 1
        target = self.path(f"cert{self.counter}.pem")
        self.run(
            "x509", "-req", "-in", self._csr(key or self.rsa(), subject), "-CA", issuer,
            "-CAkey", self.rsa(), "-set_serial", serial or str(1000 + self.counter),
            "-days", "30", f"-{digest}", "-extfile", self._extfile(kept), "-extensions", "v3",
            "-out", target,
        )
        return target

    def issue_dated(self, subject: str, issuer: Path, start: str, end: str) -> Path:
        """A leaf with the given validity (YYYYMMDDHHMMSSZ), through ``openssl ca``."""
        (self.dir / "index.txt").touch()
        (self.dir / "serial.txt").write_text("5000\n")
        config = self.path("ca.cnf")
        config.write_text(CA_CONFIG.format(dir=self.dir))
        target = self.path("dated.pem")
        self.run(
            "ca", "-config", config, "-batch", "-notext", "-cert", issuer, "-keyfile",
            self.rsa(), "-in", self._csr(self.rsa(), subject), "-startdate", start,
            "-enddate", end, "-extfile", self._extfile(LEAF_EXT), "-extensions", "v3",
            "-out", target,
        )
        return target

    def pkcs7(self, *certs: Path) -> str:
        args: list[str | Path] = ["crl2pkcs7", "-nocrl"]
        for cert in certs:
            args += ["-certfile", cert]
        return self.run(*args)


@dataclass
class Setting:
    ca: OpenSSLCA
    root: Path
    inter: Path
    sandbox: RunningSandbox
    client: GmailCSE

    def upload(self, pkcs7: str) -> dict[str, object]:
        return self.client.create_keypair(ALICE, pkcs7, KACLS_URI, "eA==")

    def refusal(self, pkcs7: str) -> str:
        with pytest.raises(GoogleAPIError) as caught:
            self.upload(pkcs7)
        assert caught.value.status == 400 and caught.value.reason == "INVALID_ARGUMENT"
        return caught.value.google_message


@pytest.fixture(scope="module")
def setting(
    tmp_path_factory: pytest.TempPathFactory, hierarchy: TestHierarchy
) -> Iterator[Setting]:
    ca = OpenSSLCA(tmp_path_factory.mktemp("openssl-ca"))
    root = ca.root()
    inter = ca.issue("/CN=OpenSSL Issuing CA/O=OpenSSL Test", root, ca=True)
    sandbox = start_sandbox(tmp_path_factory.mktemp("sandbox"), hierarchy)
    roots = sandbox.data_dir / "trusted_roots.pem"
    roots.write_text(roots.read_text() + root.read_text())  # re-read by the sandbox on change
    try:
        yield Setting(ca, root, inter, sandbox, GmailCSE(sandbox.google_config()))
    finally:
        sandbox.stop()


def _leaf(s: Setting, **changes: str | None) -> Path:
    return s.ca.issue(f"/CN={ALICE}", s.inter, extensions=changes)


# --- accepted ---------------------------------------------------------------------------------


def test_openssl_made_rsa_and_ec_leaves_are_accepted(setting: Setting) -> None:
    rsa_leaf = _leaf(setting)
    verified = setting.ca.run(
        "verify", "-purpose", "smimesign", "-CAfile", setting.root, "-untrusted", setting.inter,
        rsa_leaf,
    )
    assert verified.strip() == f"{rsa_leaf}: OK"
    created = setting.upload(setting.ca.pkcs7(rsa_leaf, setting.inter))
    assert created["subjectEmailAddresses"] == [ALICE]
    ec_leaf = setting.ca.issue(
        f"/CN={ALICE}", setting.inter, key=setting.ca.ec("P-256"),
        extensions={"keyUsage": "critical,digitalSignature,keyAgreement"},
    )
    assert setting.upload(setting.ca.pkcs7(ec_leaf, setting.inter, setting.root))["keyPairId"]


def test_syncds_own_leaf_is_accepted(setting: Setting, hierarchy: TestHierarchy) -> None:
    assert setting.upload(leaf_pkcs7(hierarchy, ALICE))["subjectEmailAddresses"] == [ALICE]


# --- refused, one rule each -----------------------------------------------------------------

LEAF_CASES: dict[str, tuple[dict[str, str | None], str]] = {
    "no emailProtection": ({"extendedKeyUsage": "clientAuth"}, "lacks emailProtection"),
    "no extendedKeyUsage": ({"extendedKeyUsage": None}, "no extendedKeyUsage"),
    "no digitalSignature": ({"keyUsage": "critical,keyEncipherment"}, "lacks digitalSignature"),
    "RSA without keyEncipherment": (
        {"keyUsage": "critical,digitalSignature"}, "lacks keyEncipherment"
    ),
    "no keyUsage": ({"keyUsage": None}, "no keyUsage"),
    "another user": (
        {"subjectAltName": f"email:bob@{DOMAIN}"}, f"subjectAltName names bob@{DOMAIN}, not"
    ),
    "no subjectAltName": ({"subjectAltName": None}, "no subjectAltName"),
    "leaf is a CA": ({"basicConstraints": "critical,CA:TRUE"}, "must not be a CA"),
    "leaf signs certificates": (
        {"keyUsage": "critical,digitalSignature,keyEncipherment,keyCertSign"},
        "keyCertSign on a certificate that is not a CA",
    ),
    "CA:FALSE with pathlen": (
        {"basicConstraints": "critical,CA:FALSE,pathlen:0"},
        "extensions cannot be parsed (path_length must be None when ca is False)"
    ),
    "RSA with keyAgreement": (
        {"keyUsage": "critical,digitalSignature,keyEncipherment,keyAgreement"},
        "keyAgreement contradicts its RSA key",
    ),
    "unknown critical extension": (
        {"1.3.6.1.4.1.55555.1": "critical,ASN1:UTF8String:x"},
        "unhandled critical extension 1.3.6.1.4.1.55555.1",
    ),
}


@pytest.mark.parametrize("case", list(LEAF_CASES))
def test_leaf_extension_rules(setting: Setting, case: str) -> None:
    changes, expected = LEAF_CASES[case]
    message = setting.refusal(setting.ca.pkcs7(_leaf(setting, **changes), setting.inter))
    assert message.startswith("Certificate chain validation failed: leaf: ")
    assert expected in message


def test_key_and_signature_rules(setting: Setting) -> None:
    ca, inter = setting.ca, setting.inter
    small = ca.issue(f"/CN={ALICE}", inter, key=ca.rsa(1024))
    assert "RSA key of 1024 bits" in setting.refusal(ca.pkcs7(small, inter))
    p521 = ca.issue(
        f"/CN={ALICE}", inter, key=ca.ec("P-521"),
        extensions={"keyUsage": "critical,digitalSignature,keyAgreement"},
    )
    assert "EC key on secp521r1" in setting.refusal(ca.pkcs7(p521, inter))
    ec_encipher = ca.issue(f"/CN={ALICE}", inter, key=ca.ec("P-256"))
    assert "keyEncipherment contradicts its EC key" in setting.refusal(ca.pkcs7(ec_encipher, inter))
    sha1 = ca.issue(f"/CN={ALICE}", inter, digest="sha1")
    assert "leaf: signature uses SHA1" in setting.refusal(ca.pkcs7(sha1, inter))


# cryptography warns that it will refuse a zero serial one day; the sandbox then says 400 too.
@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_serial_rules(setting: Setting) -> None:
    ca, inter = setting.ca, setting.inter
    long_serial = ca.issue(f"/CN={ALICE}", inter, serial="0x7f" + "ab" * 20)
    assert "serial number takes 21 bytes; at most 20" in setting.refusal(
        ca.pkcs7(long_serial, inter)
    )
    zero = ca.issue(f"/CN={ALICE}", inter, serial="0")
    assert "serial number 0 is not positive" in setting.refusal(ca.pkcs7(zero, inter))


def test_validity_rule(setting: Setting) -> None:
    expired = setting.ca.issue_dated(
        f"/CN={ALICE}", setting.inter, "20200101000000Z", "20210101000000Z"
    )
    assert "leaf: expired at 2021-01-01T00:00:00Z" in setting.refusal(
        setting.ca.pkcs7(expired, setting.inter)
    )


def test_chain_rules(setting: Setting) -> None:
    ca, root = setting.ca, setting.root
    by_root = ca.issue(f"/CN={ALICE}", root)
    assert "issued the leaf directly; at least one intermediate CA is required" in (
        setting.refusal(ca.pkcs7(by_root, root))
    )
    alone = _leaf(setting)
    issuer = "O=OpenSSL Test,CN=OpenSSL Issuing CA"
    assert f"no certificate found for the issuer {issuer}" in setting.refusal(ca.pkcs7(alone))
    untrusted_root = ca.root("/CN=Untrusted Root")
    untrusted_inter = ca.issue("/CN=Untrusted Issuing CA", untrusted_root, ca=True)
    elsewhere = ca.issue(f"/CN={ALICE}", untrusted_inter)
    assert "ends at CN=Untrusted Root, which is not a trusted root" in setting.refusal(
        ca.pkcs7(elsewhere, untrusted_inter, untrusted_root)
    )
    self_signed = ca.run(
        "req", "-x509", "-new", "-key", ca.rsa(), "-subj", f"/CN={ALICE}", "-days", "30",
        "-addext", f"subjectAltName=email:{ALICE}", "-addext", "extendedKeyUsage=emailProtection",
    )
    ss_file = ca.path("self-signed.pem")
    ss_file.write_text(self_signed)
    assert "the leaf is self-signed" in setting.refusal(ca.pkcs7(ss_file))


def test_intermediate_rules(setting: Setting) -> None:
    ca, root = setting.ca, setting.root
    not_ca = ca.issue(
        "/CN=Not A CA", root, ca=True, extensions={"basicConstraints": "critical,CA:FALSE"}
    )
    leaf = ca.issue(f"/CN={ALICE}", not_ca)
    assert "intermediate CN=Not A CA: basicConstraints CA:TRUE is missing" in setting.refusal(
        ca.pkcs7(leaf, not_ca)
    )
    no_sign = ca.issue(
        "/CN=No CertSign CA", root, ca=True, extensions={"keyUsage": "critical,cRLSign"}
    )
    leaf = ca.issue(f"/CN={ALICE}", no_sign)
    assert "intermediate CN=No CertSign CA: keyUsage lacks keyCertSign" in setting.refusal(
        ca.pkcs7(leaf, no_sign)
    )
    server_ca = ca.issue(
        "/CN=Server CA", root, ca=True, extensions={"extendedKeyUsage": "serverAuth"}
    )
    leaf = ca.issue(f"/CN={ALICE}", server_ca)
    assert "intermediate CN=Server CA: extendedKeyUsage lacks emailProtection" in (
        setting.refusal(ca.pkcs7(leaf, server_ca))
    )
    sub = ca.issue("/CN=Sub CA", setting.inter, ca=True)  # under a pathlen:0 CA
    leaf = ca.issue(f"/CN={ALICE}", sub)
    assert "pathlen 0 of O=OpenSSL Test,CN=OpenSSL Issuing CA allows fewer" in setting.refusal(
        ca.pkcs7(leaf, sub, setting.inter)
    )


# --- independence ---------------------------------------------------------------------------


def _imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), str(source))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_sandbox_imports_nothing_from_syncd_pki() -> None:
    modules = sorted(p for p in SANDBOX_DIR.glob("*.py") if p.name != TEST_KIT)
    assert len(modules) > 10
    offenders = {
        p.name: sorted(m for m in _imported_modules(p) if m == "syncd.pki" or
                       m.startswith("syncd.pki."))
        for p in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    # What the server really loads, in a fresh interpreter.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, syncd.sandbox, syncd.sandbox.app, "
         "syncd.sandbox.routes, syncd.sandbox.gmail; "
         "print(sorted(m for m in sys.modules if m.startswith('syncd.pki')))"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert loaded.stdout.strip() == "[]"
