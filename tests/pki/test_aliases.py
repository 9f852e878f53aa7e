"""Certificates carrying a user's aliases: the primary address first in the subjectAltName,
then each alias, read back by the openssl binary; through syncd's credential path with the
issuer key in a real (embedded) KMS, through an extensions file's ``email:copy``, and through
the extensions file a certifying KMS is sent (KMIP Certify, played by ``openssl x509 -req``)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine

from syncd.credentials.credential import certify
from syncd.credentials.issuers import IssuingCA
from syncd.errors import CertificateError, UncertifiableAddressError
from syncd.kms.base import LeafRequest
from syncd.kms.kmip.certify import certify_request, check_certified
from syncd.kms.local import LocalKeyManager
from syncd.pki.extensions import parse_extensions_text
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from syncd.state.models import Base
from tests.kmip.test_json_certify import openssl_certify
from tests.support.testca import TestHierarchy

if TYPE_CHECKING:
    from conftest import OpenSSL, Workdir

EMAIL = "alice@example.com"
ALIASES = ("al@example.com", "alice.smith@example.com")


def _san_line(openssl: OpenSSL, path: Path) -> str:
    """The subjectAltName value as openssl prints it (``email:a, email:b``)."""
    out = openssl("x509", "-in", path, "-noout", "-ext", "subjectAltName").stdout
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0].startswith("X509v3 Subject Alternative Name"), out
    return lines[1]


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyManager:
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('kms') / 'kms.db'}")
    Base.metadata.create_all(engine)
    return LocalKeyManager(engine, os.urandom(32), None)


def test_certify_puts_the_aliases_after_the_primary(
    kms: LocalKeyManager, hierarchy: TestHierarchy, profile: LeafProfile, now: dt.datetime,
    openssl: OpenSSL, work: Workdir,
) -> None:
    issuer_key = kms.import_private_key("issuer", hierarchy.intermediate_key)
    issuer = IssuingCA("corp", hierarchy.intermediate_cert, [hierarchy.root_cert],
                       issuer_key.private_key_id)
    key = kms.create_key_pair("syncd:alice@example.com:g1", 2048)
    cert, chain = certify(EMAIL, key, kms, issuer, profile, now, aliases=ALIASES)
    leaf = work.pem("leaf.pem", cert)
    assert _san_line(openssl, leaf) == f"email:{EMAIL}, email:{ALIASES[0]}, email:{ALIASES[1]}"
    inter = work.pem("inter.pem", hierarchy.intermediate_cert)
    verified = openssl("verify", "-purpose", "smimesign", "-CAfile", hierarchy.root_pem,
                       "-untrusted", inter, leaf)
    assert verified.stdout.strip() == f"{leaf}: OK"
    assert "BEGIN PKCS7" in chain
    plain, _ = certify(EMAIL, key, kms, issuer, profile, now)
    assert _san_line(openssl, work.pem("plain.pem", plain)) == f"email:{EMAIL}"


def test_duplicates_and_the_primary_among_aliases_appear_once(
    hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, profile: LeafProfile,
    now: dt.datetime, openssl: OpenSSL, work: Workdir,
) -> None:
    cert = issue_leaf(EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert,
                      hierarchy.signer(), profile, now,
                      aliases=("Alice@example.com", ALIASES[0], ALIASES[0]))
    assert _san_line(openssl, work.pem("leaf.pem", cert)) == f"email:{EMAIL}, email:{ALIASES[0]}"


def test_an_extensions_file_with_email_copy_carries_the_aliases(
    hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, now: dt.datetime,
    openssl: OpenSSL, work: Workdir,
) -> None:
    rules = parse_extensions_text(
        "[v3_ca]\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=emailProtection\nsubjectAltName=email:copy,URI:https://id.example\n",
        "ext.cnf")
    profile = LeafProfile(extensions=rules)
    cert = issue_leaf(EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert,
                      hierarchy.signer(), profile, now, aliases=ALIASES)
    assert _san_line(openssl, work.pem("leaf.pem", cert)) == (
        f"email:{EMAIL}, URI:https://id.example, email:{ALIASES[0]}, email:{ALIASES[1]}")


def test_a_non_ascii_alias_is_refused_permanently_naming_it(
    hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, profile: LeafProfile,
    now: dt.datetime,
) -> None:
    with pytest.raises(UncertifiableAddressError, match="its alias josé@example.com"):
        issue_leaf(EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert,
                   hierarchy.signer(), profile, now, aliases=("josé@example.com",))


def test_a_certifying_kms_is_sent_the_aliases_and_checked_for_them(
    hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, profile: LeafProfile,
    now: dt.datetime, openssl: OpenSSL, work: Workdir,
) -> None:
    leaf = LeafRequest(email=EMAIL, public_key=leaf_key.public_key(), public_key_id="pk",
                       label="syncd:alice", issuer_certificate=hierarchy.intermediate_cert,
                       issuer_private_key_id="issuer-sk", profile=profile, now=now,
                       aliases=ALIASES)
    request = certify_request(leaf)
    der = openssl_certify(work.path, hierarchy, leaf_key, request.subject,
                          request.extensions_conf, request.validity_days)
    cert = x509.load_der_x509_certificate(der)
    path = work.path / "certified.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert _san_line(openssl, path) == f"email:{EMAIL}, email:{ALIASES[0]}, email:{ALIASES[1]}"
    checked_at = dt.datetime.now(dt.UTC)  # openssl dated the certificate now, not at `now`
    check_certified(cert, EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert, checked_at,
                    ALIASES)
    with pytest.raises(CertificateError, match="does not name other@example.com"):
        check_certified(cert, EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert,
                        checked_at, (*ALIASES, "other@example.com"))
