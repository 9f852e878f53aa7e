"""issue_leaf against a real hierarchy, checked by the validator and by the openssl binary."""

from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from syncd.errors import CertificateError
from syncd.pki import validate
from syncd.pki.extensions import parse_extensions_text
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import HashName, LeafProfile
from tests.support.testca import TestHierarchy, make_test_hierarchy, sign_with

if TYPE_CHECKING:
    from conftest import OpenSSL, Workdir

EMAIL = "alice@example.com"
ExtT = TypeVar("ExtT", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[ExtT]) -> x509.Extension[ExtT]:
    return cert.extensions.get_extension_for_class(kind)


def test_issued_leaf_follows_google_profile(
    good_leaf: x509.Certificate, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    assert validate.leaf_violations(good_leaf, EMAIL, now) == []
    assert (
        validate.chain_violations(
            good_leaf, [hierarchy.intermediate_cert], [hierarchy.root_cert], now
        )
        == []
    )
    assert good_leaf.subject.rfc4514_string() == f"CN={EMAIL},O=Example"
    ku = _ext(good_leaf, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert ku.value.key_encipherment and not ku.value.key_cert_sign
    assert _ext(good_leaf, x509.BasicConstraints).critical
    assert _ext(good_leaf, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    ) == [EMAIL]
    inter_ski = _ext(hierarchy.intermediate_cert, x509.SubjectKeyIdentifier).value.digest
    assert _ext(good_leaf, x509.AuthorityKeyIdentifier).value.key_identifier == inter_ski
    crl = _ext(good_leaf, x509.CRLDistributionPoints).value
    assert crl[0].full_name[0].value == "http://crl.example.test/issuing.crl"
    aia = _ext(good_leaf, x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == "http://ca.example.test/issuing.crt"
    assert good_leaf.not_valid_before_utc == (now - dt.timedelta(minutes=5)).replace(microsecond=0)


def test_openssl_verifies_leaf_for_smime_signing(
    good_leaf: x509.Certificate, hierarchy: TestHierarchy, openssl: OpenSSL, work: Workdir
) -> None:
    leaf = work.pem("leaf.pem", good_leaf)
    inter = work.pem("inter.pem", hierarchy.intermediate_cert)
    result = openssl(
        "verify", "-purpose", "smimesign", "-CAfile", hierarchy.root_pem, "-untrusted", inter, leaf
    )
    assert result.stdout.strip() == f"{leaf}: OK"


def test_openssl_rejects_leaf_without_the_intermediate(
    good_leaf: x509.Certificate, hierarchy: TestHierarchy, openssl: OpenSSL, work: Workdir
) -> None:
    leaf = work.pem("leaf.pem", good_leaf)
    result = openssl(
        "verify", "-purpose", "smimesign", "-CAfile", hierarchy.root_pem, leaf, check=False
    )
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr


def test_cms_sign_verify_encrypt_decrypt_with_openssl(
    good_leaf: x509.Certificate,
    leaf_key: rsa.RSAPrivateKey,
    hierarchy: TestHierarchy,
    openssl: OpenSSL,
    work: Workdir,
) -> None:
    message = work.path / "message.txt"
    message.write_text("Quarterly numbers attached.\n")
    leaf, key = work.pem("leaf.pem", good_leaf), work.key("leaf.key", leaf_key)
    inter = work.pem("inter.pem", hierarchy.intermediate_cert)
    signed, verified = work.path / "signed.p7m", work.path / "verified.txt"
    openssl(
        "cms",
        "-sign",
        "-in",
        message,
        "-signer",
        leaf,
        "-inkey",
        key,
        "-passin",
        work.passin,
        "-certfile",
        inter,
        "-out",
        signed,
    )
    openssl(
        "cms",
        "-verify",
        "-in",
        signed,
        "-CAfile",
        hierarchy.root_pem,
        "-purpose",
        "smimesign",
        "-out",
        verified,
    )
    assert verified.read_text() == message.read_text()

    encrypted, decrypted = work.path / "enc.p7m", work.path / "dec.txt"
    openssl("cms", "-encrypt", "-aes256", "-in", message, "-out", encrypted, leaf)
    assert message.read_bytes() not in encrypted.read_bytes()
    openssl(
        "cms",
        "-decrypt",
        "-in",
        encrypted,
        "-recip",
        leaf,
        "-inkey",
        key,
        "-passin",
        work.passin,
        "-out",
        decrypted,
    )
    assert decrypted.read_text() == message.read_text()


def test_validity_is_capped_at_the_issuer_not_after(
    leaf_key: rsa.RSAPrivateKey, now: dt.datetime
) -> None:
    short = make_test_hierarchy(None, now=now, intermediate_days=10)
    profile = LeafProfile(validity_days=365)
    cert = issue_leaf(
        EMAIL, leaf_key.public_key(), short.intermediate_cert, short.signer(), profile, now
    )
    assert cert.not_valid_after_utc == short.intermediate_cert.not_valid_after_utc
    longer = issue_leaf(
        EMAIL,
        leaf_key.public_key(),
        short.intermediate_cert,
        short.signer(),
        dataclasses.replace(profile, validity_days=3),
        now,
    )
    assert longer.not_valid_after_utc == (now + dt.timedelta(days=3)).replace(microsecond=0)


def test_expired_issuer_cannot_issue(
    leaf_key: rsa.RSAPrivateKey, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    later = hierarchy.intermediate_cert.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(CertificateError, match="expired on"):
        issue_leaf(
            EMAIL,
            leaf_key.public_key(),
            hierarchy.intermediate_cert,
            hierarchy.signer(),
            LeafProfile(),
            later,
        )


def test_serials_are_positive_and_at_most_20_bytes(
    leaf_key: rsa.RSAPrivateKey, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    serials = {
        issue_leaf(
            EMAIL,
            leaf_key.public_key(),
            hierarchy.intermediate_cert,
            hierarchy.signer(),
            LeafProfile(),
            now,
        ).serial_number
        for _ in range(200)
    }
    assert len(serials) == 200
    assert all(s > 0 and (s.bit_length() + 8) // 8 <= 20 for s in serials)
    assert max(s.bit_length() for s in serials) > 150  # the full 159-bit range is used


def test_explicit_serial_is_used_and_checked(
    leaf_key: rsa.RSAPrivateKey, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    cert = issue_leaf(
        EMAIL,
        leaf_key.public_key(),
        hierarchy.intermediate_cert,
        hierarchy.signer(),
        LeafProfile(),
        now,
        serial=4242,
    )
    assert cert.serial_number == 4242
    for bad in (0, -1, 2**159):
        with pytest.raises(CertificateError, match="serial"):
            issue_leaf(
                EMAIL,
                leaf_key.public_key(),
                hierarchy.intermediate_cert,
                hierarchy.signer(),
                LeafProfile(),
                now,
                serial=bad,
            )


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_ec_p256_issuer(
    ec_hierarchy: TestHierarchy,
    leaf_key: rsa.RSAPrivateKey,
    now: dt.datetime,
    openssl: OpenSSL,
    work: Workdir,
    hash_name: HashName,
) -> None:
    profile = LeafProfile(hash=hash_name)
    cert = issue_leaf(
        EMAIL,
        leaf_key.public_key(),
        ec_hierarchy.intermediate_cert,
        ec_hierarchy.signer(hash_name),
        profile,
        now,
    )
    algorithm = cert.signature_hash_algorithm
    assert algorithm is not None and algorithm.name == hash_name
    assert validate.leaf_violations(cert, EMAIL, now) == []
    assert (
        validate.chain_violations(
            cert, [ec_hierarchy.intermediate_cert], [ec_hierarchy.root_cert], now
        )
        == []
    )
    root = work.pem("root.pem", ec_hierarchy.root_cert)
    inter = work.pem("inter.pem", ec_hierarchy.intermediate_cert)
    openssl(
        "verify",
        "-purpose",
        "smimesign",
        "-CAfile",
        root,
        "-untrusted",
        inter,
        work.pem("leaf.pem", cert),
    )


def test_ec_leaf_key_gets_key_agreement(hierarchy: TestHierarchy, now: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = issue_leaf(
        EMAIL, key.public_key(), hierarchy.intermediate_cert, hierarchy.signer(), LeafProfile(), now
    )
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.key_agreement and not ku.key_encipherment
    assert validate.leaf_violations(cert, EMAIL, now) == []


def test_signature_from_the_wrong_key_is_refused(
    leaf_key: rsa.RSAPrivateKey, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    stranger = rsa.generate_private_key(65537, 2048)
    with pytest.raises(CertificateError, match="does not verify against the issuer"):
        issue_leaf(
            EMAIL,
            leaf_key.public_key(),
            hierarchy.intermediate_cert,
            sign_with(stranger, "sha256"),
            LeafProfile(),
            now,
        )


def test_hash_mismatch_between_profile_and_signer_is_refused(
    leaf_key: rsa.RSAPrivateKey, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    with pytest.raises(CertificateError, match="does not verify"):
        issue_leaf(
            EMAIL,
            leaf_key.public_key(),
            hierarchy.intermediate_cert,
            hierarchy.signer("sha512"),
            LeafProfile(hash="sha256"),
            now,
        )


def test_extensions_file_replaces_defaults(
    leaf_key: rsa.RSAPrivateKey,
    hierarchy: TestHierarchy,
    now: dt.datetime,
    openssl: OpenSSL,
    work: Workdir,
) -> None:
    rules = parse_extensions_text(
        "[ v3_ca ]\n"
        "keyUsage=critical,nonRepudiation,digitalSignature,dataEncipherment,keyEncipherment\n"
        "extendedKeyUsage=emailProtection,clientAuth\n"
        "crlDistributionPoints=URI:http://crl.example.com/ca.crl\n"
        "subjectAltName=email:copy,DNS:mail.example.com\n"
        "basicConstraints=critical,CA:FALSE\n"
        "certificatePolicies=1.3.6.1.4.1.99999.1\n",
        "ext.cnf",
    )
    profile = LeafProfile(
        extensions=rules,
        aia_ocsp=("http://ocsp.example.test",),
        crl_distribution_points=("http://ignored.example.test/x.crl",),
    )
    cert = issue_leaf(
        EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert, hierarchy.signer(), profile, now
    )
    assert validate.leaf_violations(cert, EMAIL, now) == []
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [EMAIL]
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.com"]
    assert _ext(cert, x509.KeyUsage).value.data_encipherment
    assert ExtendedKeyUsageOID.CLIENT_AUTH in _ext(cert, x509.ExtendedKeyUsage).value
    points = _ext(cert, x509.CRLDistributionPoints).value
    assert [p.full_name[0].value for p in points] == ["http://crl.example.com/ca.crl"]
    assert _ext(cert, x509.AuthorityInformationAccess).value[0].access_location.value == (
        "http://ocsp.example.test"
    )
    _ext(cert, x509.SubjectKeyIdentifier)
    _ext(cert, x509.AuthorityKeyIdentifier)
    openssl(
        "verify",
        "-purpose",
        "smimesign",
        "-CAfile",
        hierarchy.root_pem,
        "-untrusted",
        work.pem("inter.pem", hierarchy.intermediate_cert),
        work.pem("leaf.pem", cert),
    )


def test_issuing_from_many_threads(hierarchy: TestHierarchy, now: dt.datetime) -> None:
    keys = [rsa.generate_private_key(65537, 2048) for _ in range(4)]
    ec_issuer = make_test_hierarchy(None, key_type="ec")

    def one(index: int) -> x509.Certificate:
        issuer = hierarchy if index % 2 else ec_issuer
        return issue_leaf(
            f"user{index}@example.com",
            keys[index % 4].public_key(),
            issuer.intermediate_cert,
            issuer.signer(),
            LeafProfile(),
            now,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        certs = list(pool.map(one, range(64)))
    for index, cert in enumerate(certs):
        assert validate.leaf_violations(cert, f"user{index}@example.com", now) == []
    assert len({c.serial_number for c in certs}) == 64


LONG_EMAIL = "first.middle.lastname.department.team" + ".x" * 12 + "@subsidiary.example.com"


def test_long_address_gets_a_short_common_name_and_the_full_address_in_san(
    hierarchy: TestHierarchy,
    leaf_key: rsa.RSAPrivateKey,
    now: dt.datetime,
    openssl: OpenSSL,
    work: Workdir,
) -> None:
    """X.520 caps a CN at 64 characters: CN={email} falls back to the local part, and the
    subjectAltName (what S/MIME matches) keeps the whole address."""
    assert len(LONG_EMAIL) > 64
    profile = LeafProfile(subject_template="CN={email},O=Example")
    leaf = issue_leaf(
        LONG_EMAIL, leaf_key.public_key(), hierarchy.intermediate_cert, hierarchy.signer(),
        profile, now,
    )
    local_part = LONG_EMAIL.split("@")[0]
    assert leaf.subject.rfc4514_string() == f"CN={local_part},O=Example"
    san = _ext(leaf, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [LONG_EMAIL]
    leaf_file = work.pem("leaf.pem", leaf)
    inter = work.pem("inter.pem", hierarchy.intermediate_cert)
    verified = openssl(
        "verify", "-purpose", "smimesign", "-CAfile", hierarchy.root_pem, "-untrusted", inter,
        leaf_file,
    )
    assert verified.stdout.strip() == f"{leaf_file}: OK"
    text = openssl("x509", "-in", leaf_file, "-noout", "-text").stdout
    assert f"CN = {local_part}\n" in text
    assert f"email:{LONG_EMAIL}" in text


def test_international_local_part_is_refused_permanently(
    hierarchy: TestHierarchy, leaf_key: rsa.RSAPrivateKey, profile: LeafProfile, now: dt.datetime
) -> None:
    from syncd.errors import PermanentError, UncertifiableAddressError

    with pytest.raises(UncertifiableAddressError, match="internationalised local part") as caught:
        issue_leaf(
            "josé@example.com", leaf_key.public_key(), hierarchy.intermediate_cert,
            hierarchy.signer(), profile, now,
        )
    assert isinstance(caught.value, PermanentError)
    assert isinstance(caught.value, CertificateError)
