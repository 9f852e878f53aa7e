"""``syncd ca import`` against issuers made with plain ``openssl`` (not syncd's test CA
builders), its verdict checked against ``openssl verify -purpose smimesign`` on a leaf each
issuer signed: refused where OpenSSL refuses the leaf, warned where OpenSSL accepts it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Installation

PASSWORD = "issuer p12 secret"

_CA = """basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
extendedKeyUsage = emailProtection
"""
ISSUERS = {
    "good": _CA,
    "bc-not-critical": _CA.replace("critical, CA:TRUE", "CA:TRUE"),
    "ku-not-critical": _CA.replace("critical, keyCertSign", "keyCertSign"),
    "eku-without-email": _CA.replace("emailProtection", "clientAuth"),
}
LEAF = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:alice@example.com
"""


def _openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"
    return done


def _sign(folder: Path, name: str, subject: str, ca: str, extensions: str) -> None:
    """``name.key`` and ``name.pem``, signed by ``ca`` (``ca.pem``/``ca.key``) with
    ``openssl x509 -req -extfile``."""
    (folder / f"{name}.cnf").write_text(
        "[v3]\n" + extensions + "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
    )
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / f"{name}.key"),
             "-subj", subject, "-out", str(folder / f"{name}.csr"))
    _openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / f"{ca}.pem"),
             "-CAkey", str(folder / f"{ca}.key"), "-CAcreateserial", "-days", "30", "-sha256",
             "-extfile", str(folder / f"{name}.cnf"), "-extensions", "v3",
             "-out", str(folder / f"{name}.pem"))


@dataclass(frozen=True)
class Issuers:
    folder: Path

    def p12(self, name: str) -> Path:
        return self.folder / f"{name}.p12"

    def verify_leaf(self, name: str, *flags: str) -> bool:
        """``openssl verify -purpose smimesign`` of the leaf ``name`` issued."""
        folder = self.folder
        done = _openssl("verify", *flags, "-purpose", "smimesign", "-CAfile",
                        str(folder / "root.pem"), "-untrusted", str(folder / f"{name}.pem"),
                        str(folder / f"leaf-{name}.pem"), check=False)
        return done.returncode == 0


@pytest.fixture(scope="module")
def issuers(tmp_path_factory: pytest.TempPathFactory) -> Issuers:
    folder = tmp_path_factory.mktemp("openssl-issuers")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / "root.key"),
             "-subj", "/O=OpenSSL Made/CN=OpenSSL Root", "-days", "60", "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(folder / "root.pem"))
    for name, extensions in ISSUERS.items():
        _sign(folder, name, f"/O=OpenSSL Made/CN=Issuer {name}", "root",
              extensions + "crlDistributionPoints = URI:http://crl.example.test/i.crl\n")
        _sign(folder, f"leaf-{name}", "/CN=alice@example.com", name, LEAF)
        _openssl("pkcs12", "-export", "-inkey", str(folder / f"{name}.key"),
                 "-in", str(folder / f"{name}.pem"), "-passout", f"pass:{PASSWORD}",
                 "-out", str(folder / f"{name}.p12"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             str(folder / "stranger.key"), "-subj", "/O=Stranger/CN=Stranger Root", "-days", "60",
             "-addext", "basicConstraints=critical,CA:TRUE", "-out", str(folder / "stranger.pem"))
    _openssl("pkcs12", "-export", "-inkey", str(folder / "good.key"), "-in",
             str(folder / "good.pem"), "-certfile", str(folder / "stranger.pem"),
             "-passout", f"pass:{PASSWORD}", "-out", str(folder / "good-with-stranger.p12"))
    (folder / "pw").write_text(PASSWORD)
    (folder / "pw").chmod(0o600)
    return Issuers(folder)


def _import(inst: Installation, issuers: Issuers, name: str, *chain: str) -> tuple[int, list[str]]:
    args = ["ca", "import", str(issuers.p12(name)), "--password-file", str(issuers.folder / "pw"),
            "--label", name]
    result = inst.syncd(*args, *(("--chain", chain[0]) if chain else ()))
    assert "Traceback" not in result.stderr
    return result.code, result.stderr.strip().splitlines()


def test_openssl_made_issuers_are_judged_as_openssl_judges_their_leaves(
    sqlite_installation: Installation, issuers: Issuers
) -> None:
    inst, root = sqlite_installation, str(issuers.folder / "root.pem")
    assert issuers.verify_leaf("good") and issuers.verify_leaf("good", "-x509_strict")
    code, lines = _import(inst, issuers, "good", root)
    assert (code, lines) == (0, [])

    # basicConstraints not critical: RFC 5280 requires it; OpenSSL's strict mode refuses.
    assert not issuers.verify_leaf("bc-not-critical", "-x509_strict")
    code, lines = _import(inst, issuers, "bc-not-critical", root)
    assert code == 2 and len(lines) == 1
    assert lines[0] == (
        f"syncd: {issuers.p12('bc-not-critical')}: issuer refused: issuer: basicConstraints is "
        "not marked critical; RFC 5280 requires it on a CA and OpenSSL's strict verification "
        "(-x509_strict) refuses the chain"
    )

    # extendedKeyUsage without emailProtection: OpenSSL refuses every leaf for S/MIME.
    assert not issuers.verify_leaf("eku-without-email")
    code, lines = _import(inst, issuers, "eku-without-email", root)
    assert code == 2 and len(lines) == 1
    assert lines[0].endswith(
        "issuer refused: issuer: extendedKeyUsage (clientAuth) lacks emailProtection; OpenSSL "
        "refuses every leaf it issues for S/MIME (verify -purpose smimesign, cms -verify)"
    )

    # keyUsage not critical: OpenSSL (strict too) verifies the leaf, so a warning, imported.
    assert issuers.verify_leaf("ku-not-critical", "-x509_strict")
    code, lines = _import(inst, issuers, "ku-not-critical", root)
    assert code == 0
    assert lines == [
        "warning: issuer: keyUsage is not marked critical; RFC 5280 recommends it (OpenSSL and "
        "Google accept it)"
    ]
    shown = inst.ok("ca", "show", "--format", "json")
    assert '"label": "ku-not-critical"' in shown and '"label": "bc-not-critical"' not in shown

    # A --chain that does not link to the issuer: OpenSSL cannot build the leaf's path to it
    # either; refused (it used to be dropped without a word).
    stranger_root = str(issuers.folder / "stranger.pem")
    done = _openssl("verify", "-purpose", "smimesign", "-CAfile", stranger_root, "-untrusted",
                    str(issuers.folder / "good.pem"), str(issuers.folder / "leaf-good.pem"),
                    check=False)
    assert done.returncode != 0
    code, lines = _import(inst, issuers, "good", stranger_root)
    assert code == 2
    assert lines == [
        f"syncd: --chain {stranger_root}: CN=Stranger Root,O=Stranger does not link to the "
        "issuer CN=Issuer good,O=OpenSSL Made (neither its issuer nor above it); refused"
    ]
    # The same stranger carried by the PKCS#12 file itself: left out, and said so.
    code, lines = _import(inst, issuers, "good-with-stranger", root)
    assert code == 0
    assert lines == [
        f"warning: {issuers.p12('good-with-stranger')}: CN=Stranger Root,O=Stranger does not "
        "link to the issuer; left out"
    ]
