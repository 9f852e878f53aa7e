"""The Certify path: syncd's leaf profile rendered as the extensions file Cosmian's Certify takes.

The rendering is judged twice: parsed back by syncd's own extensions parser (the format is the
one it reads), and, independently, by OpenSSL (``openssl x509 -req -extfile ... -extensions
v3_ca``, what Cosmian's server hands the file to), whose certificate must carry exactly the
extensions syncd would have put in a certificate signed with KMIP Sign. ``certify_leaf`` is run
end to end against a KMS stand-in whose Certify is OpenSSL itself, and against the bridge,
whose PyKMIP has no Certify (NotSupportedByServer).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from syncd.errors import CertificateError
from syncd.kms.base import LeafRequest
from syncd.kms.kmip import json_ttlv as jt
from syncd.kms.kmip.certify import (
    certify_leaf,
    certify_request,
    check_certified,
    extension_line,
    render_extensions_conf,
)
from syncd.kms.kmip.json_transport import JsonTransport
from syncd.kms.kmip.transport import CertifyRequest, NotSupportedByServer
from syncd.pki.extensions import LeafContext, build_extensions, parse_extensions_text
from syncd.pki.issue import leaf_extensions
from syncd.pki.profile import LeafProfile
from tests.kmip.bridge_fixtures import cosmian_bridge as cosmian_bridge
from tests.kmip.bridge_fixtures import json_transport as json_transport
from tests.kmip.bridge_fixtures import pykmip_for_json as pykmip_for_json
from tests.support.testca import TestHierarchy, make_test_hierarchy

EMAIL = "alice@example.com"
COSMIAN_EXAMPLE = """\
[ v3_ca ]
keyUsage=nonRepudiation,digitalSignature,dataEncipherment,keyEncipherment
extendedKeyUsage=emailProtection
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always,issuer
crlDistributionPoints=URI:http://crl.example.test/issuing.crl
"""
"""The leaf extensions file of Cosmian's ``google key-pairs create`` help text, plus a CRL."""


@pytest.fixture(scope="module")
def hierarchy() -> TestHierarchy:
    return make_test_hierarchy()


@pytest.fixture(scope="module")
def leaf_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


PROFILES = {
    "default": LeafProfile(crl_distribution_points=("http://crl.example.test/issuing.crl",),
                           aia_ca_issuers=("http://ca.example.test/issuing.cer",),
                           aia_ocsp=("http://ocsp.example.test",)),
    "cosmian-file": LeafProfile(extensions=parse_extensions_text(COSMIAN_EXAMPLE, "example")),
    "policies": LeafProfile(extensions=parse_extensions_text(
        "[v3_ca]\nbasicConstraints=critical,CA:FALSE\nsubjectAltName=email:copy\n"
        "certificatePolicies=1.3.6.1.4.1.99999.1\nextendedKeyUsage=emailProtection,"
        "1.3.6.1.4.1.311.10.3.4\n", "policies")),
}


def _leaf(public_key: rsa.RSAPublicKey, public_key_id: str, hierarchy: TestHierarchy,
          email: str = EMAIL) -> LeafRequest:
    """The leaf ``email`` asks for, under the default profile, issued by the test intermediate."""
    return LeafRequest(email=email, public_key=public_key, public_key_id=public_key_id,
                       label=f"syncd:{email}", issuer_certificate=hierarchy.intermediate_cert,
                       issuer_private_key_id="issuer-sk", profile=PROFILES["default"],
                       now=dt.datetime.now(dt.UTC))


def _expected(profile: LeafProfile, hierarchy: TestHierarchy,
              key: rsa.RSAPrivateKey) -> list[tuple[x509.ExtensionType, bool]]:
    return leaf_extensions(profile, LeafContext(EMAIL, key.public_key(),
                                                hierarchy.intermediate_cert))


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_rendering_parses_back_with_syncds_parser(name: str, hierarchy: TestHierarchy,
                                                  leaf_key: rsa.RSAPrivateKey) -> None:
    expected = _expected(PROFILES[name], hierarchy, leaf_key)
    conf = render_extensions_conf(expected)
    assert conf.startswith("[v3_ca]\n")
    ctx = LeafContext(EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert)
    assert build_extensions(parse_extensions_text(conf, "rendered"), ctx) == expected


def _write(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def openssl_certify(folder: Path, hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey,
                    subject: str, conf: str, days: int) -> bytes:
    """What a KMS whose Certify hands the file to OpenSSL makes: the leaf certificate DER."""
    ca = _write(folder / "ca.pem", hierarchy.intermediate_cert.public_bytes(
        serialization.Encoding.PEM))
    ca_key = _write(folder / "ca.key", hierarchy.intermediate_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key = _write(folder / "leaf.key", leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    extfile = _write(folder / "ext.cnf", conf.encode())
    slash_subject = "/" + "/".join(part for part in reversed(subject.split(",")))
    csr = folder / "leaf.csr"
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj", slash_subject,
                    "-out", str(csr)], check=True, capture_output=True)
    leaf = folder / "leaf.der"
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca),
                    "-CAkey", str(ca_key), "-set_serial", "0x1234", "-days", str(days),
                    "-sha256", "-extfile", str(extfile), "-extensions", "v3_ca",
                    "-outform", "DER", "-out", str(leaf)], check=True, capture_output=True)
    return leaf.read_bytes()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_openssl_reads_the_rendering_as_the_same_extensions(
        name: str, hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey,
        tmp_path: Path) -> None:
    expected = _expected(PROFILES[name], hierarchy, leaf_key)
    der = openssl_certify(tmp_path, hierarchy, leaf_key, f"CN={EMAIL}",
                          render_extensions_conf(expected), 30)
    cert = x509.load_der_x509_certificate(der)
    got = {type(ext.value): (ext.value, ext.critical) for ext in cert.extensions}
    assert got == {type(ext): (ext, critical) for ext, critical in expected}


def test_default_rendering_reads_as_an_administrator_would_write_it(
        hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey) -> None:
    conf = render_extensions_conf(_expected(PROFILES["default"], hierarchy, leaf_key))
    assert conf.splitlines() == [
        "[v3_ca]",
        "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment",
        "extendedKeyUsage=emailProtection",
        f"subjectAltName=email:{EMAIL}",
        "basicConstraints=critical,CA:FALSE",
        "crlDistributionPoints=URI:http://crl.example.test/issuing.crl",
        "authorityInfoAccess=caIssuers;URI:http://ca.example.test/issuing.cer,"
        "OCSP;URI:http://ocsp.example.test",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid:always",
    ]


@pytest.mark.parametrize("extension", [
    x509.SubjectAlternativeName([x509.RFC822Name("a,b@example.com")]),
    x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://x/$HOME")], None, None, None)]),
    x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("1.2.3"),
                                                     ["http://cps.example.test"])]),
    x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([]))]),
    x509.OCSPNoCheck(),
])
def test_what_an_extensions_file_cannot_say_is_refused(extension: x509.ExtensionType) -> None:
    with pytest.raises(CertificateError) as caught:
        extension_line(extension, False)
    assert "\n" not in str(caught.value)


def test_certify_request_and_its_wire_shape(hierarchy: TestHierarchy,
                                            leaf_key: rsa.RSAPrivateKey) -> None:
    request = certify_request(_leaf(leaf_key.public_key(), "pk-1", hierarchy), "issuer-cert")
    assert request.subject == f"CN={EMAIL}" and request.validity_days == 365
    item = jt.certify(jt.V5, request.public_key_id, request.issuer_private_key_id,
                      request.issuer_certificate_id, jt.subject_fields(request.subject),
                      request.extensions_conf, request.validity_days, request.label)
    assert item.need("Attributes").need("CertificateAttributes").text(
        "CertificateSubjectCn") == EMAIL
    vendor = jt.read_vendor_attributes(item.need("Attributes"))
    assert vendor["x509-extension"].value.decode() == request.extensions_conf


class OpenSslCertify:
    """A KMS stand-in whose Certify is OpenSSL with the request's extensions file (as Cosmian's
    server does with its OpenSSL), for the end-to-end check of certify_leaf."""

    def __init__(self, folder: Path, hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey,
                 tamper: bool = False) -> None:
        self.folder, self.hierarchy, self.leaf_key = folder, hierarchy, leaf_key
        self.tamper = tamper
        self.requests: list[CertifyRequest] = []

    def describe(self) -> str:
        return "OpenSSL stand-in"

    def certify(self, request: CertifyRequest) -> bytes:
        self.requests.append(request)
        conf = request.extensions_conf
        if self.tamper:
            conf = conf.replace(f"email:{EMAIL}", "email:mallory@example.com")
        return openssl_certify(self.folder, self.hierarchy, self.leaf_key, request.subject,
                               conf, request.validity_days)


def test_certify_leaf_end_to_end_with_openssl_as_the_kms(
        hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    kms = OpenSslCertify(tmp_path, hierarchy, leaf_key)
    cert = certify_leaf(kms, _leaf(leaf_key.public_key(), "pk-1", hierarchy))  # type: ignore[arg-type]
    assert cert.verify_directly_issued_by(hierarchy.intermediate_cert) is None
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    # the certificate OpenSSL made passes openssl's own S/MIME signing purpose check
    chain = tmp_path / "chain.pem"
    chain.write_bytes(hierarchy.intermediate_cert.public_bytes(serialization.Encoding.PEM))
    root = tmp_path / "root.pem"
    root.write_bytes(hierarchy.root_cert.public_bytes(serialization.Encoding.PEM))
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    verified = subprocess.run(["openssl", "verify", "-purpose", "smimesign", "-CAfile",
                               str(root), "-untrusted", str(chain), str(leaf)],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr


def test_certify_leaf_refuses_a_certificate_for_someone_else(
        hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    kms = OpenSslCertify(tmp_path, hierarchy, leaf_key, tamper=True)
    with pytest.raises(CertificateError, match=f"does not name {EMAIL}"):
        certify_leaf(kms, _leaf(leaf_key.public_key(), "pk-1", hierarchy))  # type: ignore[arg-type]


def test_check_certified_refuses_another_key_and_another_issuer(
        hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    conf = render_extensions_conf(_expected(PROFILES["default"], hierarchy, leaf_key))
    cert = x509.load_der_x509_certificate(
        openssl_certify(tmp_path, hierarchy, leaf_key, f"CN={EMAIL}", conf, 30))
    now = dt.datetime.now(dt.UTC)
    other = rsa.generate_private_key(65537, 2048)
    with pytest.raises(CertificateError, match="certifies another public key"):
        check_certified(cert, EMAIL, other.public_key(), hierarchy.intermediate_cert, now)
    with pytest.raises(CertificateError, match="not signed by the issuer"):
        check_certified(cert, EMAIL, leaf_key.public_key(), hierarchy.root_cert, now)


def test_certify_leaf_through_the_bridge_is_not_supported(
        json_transport: JsonTransport, hierarchy: TestHierarchy) -> None:
    """PyKMIP has no Certify: the bridge answers as a Cosmian release without it would."""
    pair = json_transport.create_key_pair("syncd:certify@example.com:1", 2048)
    public = serialization.load_der_public_key(json_transport.public_key_der(pair.public_key_id))
    assert isinstance(public, rsa.RSAPublicKey)
    with pytest.raises(NotSupportedByServer, match="Certify of key"):
        certify_leaf(json_transport, _leaf(public, pair.public_key_id, hierarchy,
                                           "certify@example.com"))
