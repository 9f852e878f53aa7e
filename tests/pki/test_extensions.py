"""Parsing OpenSSL-style [v3_ca] extensions files, and their errors naming file and line."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from syncd.errors import ConfigError
from syncd.pki.extensions import (
    LeafContext,
    build_extensions,
    load_extensions_file,
    parse_extensions_text,
)
from tests.support.testca import TestHierarchy

ExtT = TypeVar("ExtT", bound=x509.ExtensionType)

COSMIAN_EXAMPLE = """\
# leaf profile for Gmail CSE
[ req ]
distinguished_name = req_dn

[ v3_ca ]
keyUsage=nonRepudiation,digitalSignature,dataEncipherment,keyEncipherment  # signing + enc
extendedKeyUsage=emailProtection
crlDistributionPoints=URI:http://crl.example.com/ca.crl
subjectAltName=email:copy
basicConstraints=critical,CA:FALSE
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
authorityInfoAccess=caIssuers;URI:http://ca.example.com/ca.crt, OCSP;URI:http://ocsp.example.com
certificatePolicies=1.3.6.1.4.1.44947.1.1.1, 2.5.29.32.0

[ other ]
bogusExtension=whatever
"""


@pytest.fixture(scope="module")
def ctx(hierarchy: TestHierarchy) -> LeafContext:
    key = rsa.generate_private_key(65537, 2048)
    return LeafContext("carol@example.com", key.public_key(), hierarchy.intermediate_cert)


def _get(found: list[tuple[x509.ExtensionType, bool]], kind: type[ExtT]) -> tuple[ExtT, bool]:
    """The extension of that type among ``found``, with its criticality."""
    for extension, critical in found:
        if isinstance(extension, kind):
            return extension, critical
    raise AssertionError(f"no {kind.__name__} among {found}")


def test_parses_the_cosmian_example(ctx: LeafContext, hierarchy: TestHierarchy) -> None:
    rules = parse_extensions_text(COSMIAN_EXAMPLE, "leaf.cnf")
    assert [r.name for r in rules] == [
        "keyUsage",
        "extendedKeyUsage",
        "crlDistributionPoints",
        "subjectAltName",
        "basicConstraints",
        "subjectKeyIdentifier",
        "authorityKeyIdentifier",
        "authorityInfoAccess",
        "certificatePolicies",
    ]
    assert rules[0].where == "leaf.cnf:6"
    found = build_extensions(rules, ctx)
    ku, ku_critical = _get(found, x509.KeyUsage)
    assert not ku_critical
    assert (
        ku.content_commitment,
        ku.digital_signature,
        ku.data_encipherment,
        ku.key_encipherment,
        ku.key_cert_sign,
    ) == (True, True, True, True, False)
    assert list(_get(found, x509.ExtendedKeyUsage)[0]) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    crl = _get(found, x509.CRLDistributionPoints)[0]
    assert [p.full_name[0].value for p in crl] == ["http://crl.example.com/ca.crl"]
    san = _get(found, x509.SubjectAlternativeName)[0]
    assert san.get_values_for_type(x509.RFC822Name) == ["carol@example.com"]
    assert _get(found, x509.BasicConstraints) == (x509.BasicConstraints(False, None), True)
    assert _get(found, x509.SubjectKeyIdentifier)[0] == x509.SubjectKeyIdentifier.from_public_key(
        ctx.public_key
    )
    inter_ski = hierarchy.intermediate_cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value.digest
    assert _get(found, x509.AuthorityKeyIdentifier)[0].key_identifier == inter_ski
    aia = _get(found, x509.AuthorityInformationAccess)[0]
    assert [(d.access_method, d.access_location.value) for d in aia] == [
        (AuthorityInformationAccessOID.CA_ISSUERS, "http://ca.example.com/ca.crt"),
        (AuthorityInformationAccessOID.OCSP, "http://ocsp.example.com"),
    ]
    policies = _get(found, x509.CertificatePolicies)[0]
    assert [p.policy_identifier.dotted_string for p in policies] == [
        "1.3.6.1.4.1.44947.1.1.1",
        "2.5.29.32.0",
    ]


def test_explicit_names_and_issuer_serial(ctx: LeafContext, hierarchy: TestHierarchy) -> None:
    rules = parse_extensions_text(
        "[v3_ca]\nsubjectAltName=critical,email:alice@example.com,DNS:example.com,"
        "URI:https://example.com/alice\nauthorityKeyIdentifier=keyid,issuer\n"
        "basicConstraints=CA:TRUE,pathlen:0\n",
        "x.cnf",
    )
    found = build_extensions(rules, ctx)
    san, critical = _get(found, x509.SubjectAlternativeName)
    assert critical
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
    assert san.get_values_for_type(x509.DNSName) == ["example.com"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["https://example.com/alice"]
    aki = _get(found, x509.AuthorityKeyIdentifier)[0]
    assert aki.authority_cert_serial_number == hierarchy.intermediate_cert.serial_number
    assert _get(found, x509.BasicConstraints)[0] == x509.BasicConstraints(True, 0)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("[v3_ca]\nfooBar=1\n", "f.cnf:2", "unknown extension 'fooBar'"),
        ("[v3_ca]\n\n# c\nkeyUsage\n", "f.cnf:4", "expected name=value"),
        (
            "[v3_ca]\nkeyUsage=digitalSignature,signEverything\n",
            "f.cnf:2",
            "unknown keyUsage 'signEverything'",
        ),
        ("[v3_ca]\nkeyUsage=critical\n", "f.cnf:2", "keyUsage has no value"),
        ("[v3_ca]\nkeyUsage=digitalSignature,,keyEncipherment\n", "f.cnf:2", "empty item"),
        (
            "[v3_ca]\nextendedKeyUsage=emailProtection,mailEverything\n",
            "f.cnf:2",
            "not a known name or a dotted OID",
        ),
        ("[v3_ca]\nbasicConstraints=CA:maybe\n", "f.cnf:2", "CA must be TRUE or FALSE"),
        ("[v3_ca]\nbasicConstraints=CA:FALSE,pathlen:0\n", "f.cnf:2", "pathlen is only allowed"),
        ("[v3_ca]\nbasicConstraints=critical\n", "f.cnf:2", "has no value"),
        ("[v3_ca]\nsubjectAltName=IP:10.0.0.1\n", "f.cnf:2", "unsupported name type 'IP'"),
        ("[v3_ca]\nsubjectAltName=alice@example.com\n", "f.cnf:2", "not a name of the form"),
        ("[v3_ca]\ncrlDistributionPoints=http://crl\n", "f.cnf:2", "not of the form URI:"),
        ("[v3_ca]\nauthorityInfoAccess=OCSP:URI:http://o\n", "f.cnf:2", "caIssuers;URI:"),
        ("[v3_ca]\nsubjectKeyIdentifier=none\n", "f.cnf:2", "must be 'hash'"),
        ("[v3_ca]\nauthorityKeyIdentifier=serial\n", "f.cnf:2", "keyid and/or issuer"),
        ("[v3_ca]\ncertificatePolicies=@polsect\n", "f.cnf:2", "plain dotted OIDs"),
        (
            "[v3_ca]\nkeyUsage=digitalSignature\nkeyUsage=keyEncipherment\n",
            "f.cnf:3",
            "given twice",
        ),
        ("[v3_ca]\nkeyUsage=encipherOnly\n", "f.cnf:2", "keyUsage"),
        ("[server]\nkeyUsage=digitalSignature\n", "f.cnf", "no [v3_ca] section"),
    ],
)
def test_errors_name_file_and_line(text: str, where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_extensions_text(text, "f.cnf")
    assert caught.value.where == where
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{where}: ")


def test_load_from_disk(tmp_path: Path, ctx: LeafContext) -> None:
    path = tmp_path / "leaf.cnf"
    path.write_text(COSMIAN_EXAMPLE)
    assert len(load_extensions_file(path)) == 9
    path.write_text("[ v3_ca ]\nkeyUsage=digitalSignature\nnope=1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: unknown extension 'nope'"):
        load_extensions_file(path)
    with pytest.raises(ConfigError, match="cannot read the extensions file"):
        load_extensions_file(tmp_path / "missing.cnf")
