"""The validator rejects each broken certificate with its own specific reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import nullcontext

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID

from syncd.errors import CertificateError
from syncd.pki import validate
from syncd.pki.chain import describe
from tests.support.testca import (
    TestHierarchy,
    make_intermediate,
    make_root,
    make_test_hierarchy,
    new_key,
)
from tests.support.testcerts import LeafSpec, build_leaf, forge

EMAIL = "alice@example.com"


@pytest.fixture
def spec(leaf_key: rsa.RSAPrivateKey) -> LeafSpec:
    return LeafSpec(email=EMAIL, public_key=leaf_key.public_key())


@pytest.fixture
def make(hierarchy: TestHierarchy) -> Callable[[LeafSpec], x509.Certificate]:
    def build(spec: LeafSpec) -> x509.Certificate:
        return build_leaf(spec, hierarchy.intermediate_cert, hierarchy.intermediate_key)

    return build


def test_hand_built_leaf_passes(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
) -> None:
    leaf = make(spec)
    assert validate.leaf_violations(leaf, EMAIL, now) == []
    assert (
        validate.chain_violations(leaf, [hierarchy.intermediate_cert], [hierarchy.root_cert], now)
        == []
    )
    validate.check_for_upload(
        leaf, [hierarchy.intermediate_cert], EMAIL, [hierarchy.root_cert], now
    )


def test_missing_email_protection(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: extendedKeyUsage lacks emailProtection"
    ]


def test_missing_extended_key_usage(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.eku = []
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: no extendedKeyUsage extension; Google requires emailProtection"
    ]


def test_san_of_another_user(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.san = [x509.RFC822Name("bob@example.com")]
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: subjectAltName email is bob@example.com, expected alice@example.com"
    ]


def test_san_comparison_ignores_case(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.san = [x509.RFC822Name("Alice@Example.com")]
    assert validate.leaf_violations(make(spec), EMAIL, now) == []


def test_san_without_email_and_missing_san(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.san = [x509.DNSName("example.com")]
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: subjectAltName has no email address; expected alice@example.com"
    ]
    spec.san = []
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: no subjectAltName extension; expected email alice@example.com"
    ]


def test_root_issuing_the_leaf_directly(
    spec: LeafSpec, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    leaf = build_leaf(spec, hierarchy.root_cert, hierarchy.root_key)
    root = describe(hierarchy.root_cert)
    expected = (
        f"chain: the root {root} issues the leaf directly; Google requires at least "
        "one intermediate"
    )
    assert validate.chain_violations(leaf, [], [hierarchy.root_cert], now) == [expected]
    assert validate.chain_violations(leaf, [hierarchy.root_cert], [], now) == [expected]
    with pytest.raises(CertificateError) as caught:
        validate.check_for_upload(leaf, [], EMAIL, [hierarchy.root_cert], now)
    assert str(caught.value) == f"certificate for {EMAIL} rejected: {expected}"
    assert caught.value.violations == [expected]


def test_1024_bit_key(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.public_key = rsa.generate_private_key(65537, 1024).public_key()
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: RSA key of 1024 bits; Google accepts 2048, 3072 or 4096"
    ]


def test_unsupported_curve(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.public_key = ec.generate_private_key(ec.SECP521R1()).public_key()
    found = validate.leaf_violations(make(spec), EMAIL, now)
    assert "leaf: EC key on curve secp521r1; Google accepts P-256 or P-384" in found


def test_sha1_signature(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
) -> None:
    leaf = forge(make(spec), hierarchy.intermediate_key, sha1=True)
    issuer_key = hierarchy.intermediate_key.public_key()
    assert isinstance(issuer_key, rsa.RSAPublicKey)
    issuer_key.verify(  # a genuine SHA-1 signature
        leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1()
    )
    assert validate.leaf_violations(leaf, EMAIL, now) == [
        "leaf: signed with SHA-1; Google accepts SHA-256, -384, -512"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x00", "leaf: serial number 0 is not positive"),
        (b"\xff", "leaf: serial number -1 is not positive"),
        (b"\x01" * 21, "leaf: serial number is 21 bytes long; Google accepts at most 20"),
    ],
)
def test_bad_serials(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
    content: bytes,
    expected: str,
) -> None:
    not_positive = content[0] in (0, 0xFF)
    # cryptography itself warns when it parses a serial that is not positive
    with pytest.warns(CryptographyDeprecationWarning) if not_positive else nullcontext():
        leaf = forge(make(spec), hierarchy.intermediate_key, serial_content=content)
        assert validate.leaf_violations(leaf, EMAIL, now) == [expected]


def test_twenty_byte_serial_is_fine(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
) -> None:
    leaf = forge(make(spec), hierarchy.intermediate_key, serial_content=b"\x7f" + b"\x01" * 19)
    assert validate.leaf_violations(leaf, EMAIL, now) == []


def test_ca_true_and_key_cert_sign_on_a_leaf(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.ca = True
    spec.key_cert_sign = True
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: basicConstraints CA:TRUE on an end-entity certificate",
        "leaf: keyUsage has keyCertSign; an end-entity certificate must not sign certificates",
    ]


def test_expired_and_not_yet_valid(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.not_before = now - dt.timedelta(days=10)
    spec.not_after = now - dt.timedelta(days=1)
    found = validate.leaf_violations(make(spec), EMAIL, now)
    assert len(found) == 1 and found[0].startswith("leaf: expired on ")
    spec.not_before = now + dt.timedelta(days=1)
    spec.not_after = now + dt.timedelta(days=10)
    found = validate.leaf_violations(make(spec), EMAIL, now)
    assert len(found) == 1 and found[0].startswith("leaf: not valid before ")


def test_ec_leaf_with_key_encipherment_is_contradictory(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    spec.public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: keyUsage lacks keyAgreement, needed to decrypt mail with EC",
        "leaf: keyUsage keyEncipherment contradicts its EC key (EC keys use keyAgreement)",
    ]


def test_signature_not_from_the_named_issuer(
    spec: LeafSpec, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    impostor_key = rsa.generate_private_key(65537, 2048)
    leaf = build_leaf(spec, hierarchy.intermediate_cert, impostor_key)
    found = validate.chain_violations(
        leaf, [hierarchy.intermediate_cert], [hierarchy.root_cert], now
    )
    inter = describe(hierarchy.intermediate_cert)
    assert found == [f"chain: signature of leaf {describe(leaf)} does not verify against {inter}"]


def test_chain_to_an_untrusted_root(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
) -> None:
    other = make_test_hierarchy(None, organization="Elsewhere")
    leaf = make(spec)
    found = validate.chain_violations(
        leaf, [hierarchy.intermediate_cert, hierarchy.root_cert], [other.root_cert], now
    )
    assert found == [f"chain: ends at {describe(hierarchy.root_cert)}, which is not a trusted root"]
    found = validate.chain_violations(leaf, [hierarchy.intermediate_cert], [other.root_cert], now)
    assert found == [
        f"chain: no issuer found for intermediate "
        f"{describe(hierarchy.intermediate_cert)} (issuer "
        f"{hierarchy.root_cert.subject.rfc4514_string()})"
    ]


def test_missing_intermediate_and_stray_certificate(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
) -> None:
    leaf = make(spec)
    other = make_test_hierarchy(None, organization="Elsewhere")
    assert validate.chain_violations(leaf, [], [], now) == [
        "chain: no intermediate certificate given; Google requires at least one"
    ]
    found = validate.chain_violations(
        leaf, [hierarchy.intermediate_cert, other.intermediate_cert], [hierarchy.root_cert], now
    )
    assert found == [f"chain: {describe(other.intermediate_cert)} is not on the leaf's chain"]
    found = validate.chain_violations(leaf, [other.intermediate_cert], [], now)
    assert found[0].startswith("chain: no issuer found for leaf")


def test_intermediate_that_is_not_a_ca(
    spec: LeafSpec, hierarchy: TestHierarchy, now: dt.datetime
) -> None:
    not_ca_key = rsa.generate_private_key(65537, 2048)
    not_ca = build_leaf(
        LeafSpec(email="ca@example.com", public_key=not_ca_key.public_key()),
        hierarchy.intermediate_cert,
        hierarchy.intermediate_key,
    )
    leaf = build_leaf(spec, not_ca, not_ca_key)
    found = validate.chain_violations(
        leaf, [not_ca, hierarchy.intermediate_cert], [hierarchy.root_cert], now
    )
    role = f"intermediate {describe(not_ca)}"
    assert f"{role}: not a CA (basicConstraints CA:TRUE missing)" in found
    assert f"{role}: keyUsage lacks keyCertSign" in found
    assert any("has pathlen 0 but 1 CA certificate(s) below it" in s for s in found)


def test_issuer_checks(hierarchy: TestHierarchy, now: dt.datetime) -> None:
    assert validate.issuer_violations(hierarchy.intermediate_cert, [hierarchy.root_cert], now) == []
    assert validate.issuer_violations(hierarchy.intermediate_cert, [], now) == []
    assert validate.issuer_warnings(hierarchy.intermediate_cert) == []
    root = describe(hierarchy.root_cert)
    assert validate.issuer_violations(hierarchy.root_cert, [], now) == [
        f"issuer: {root} is a self-signed root; roots must not issue end-entity certificates, "
        "import an intermediate instead"
    ]
    other = make_test_hierarchy(None, organization="Elsewhere")
    found = validate.issuer_violations(hierarchy.intermediate_cert, [other.root_cert], now)
    assert found[0].startswith("issuer chain: no issuer found for issuer")
    assert found[1] == f"issuer chain: {describe(other.root_cert)} does not link to the issuer"


def test_weak_issuer_and_warnings(now: dt.datetime) -> None:
    root_key = new_key("rsa")
    root = make_root(root_key, "Weak", now, 30)
    weak_key = rsa.generate_private_key(65537, 1024)
    weak = make_intermediate(weak_key, root, root_key, "Weak", None, now, 30)
    found = validate.issuer_violations(weak, [root], now)
    assert found == ["issuer: RSA key of 1024 bits; Google accepts 2048 bits or more"]
    assert validate.issuer_violations(weak, [root], now + dt.timedelta(days=60))[0].startswith(
        "issuer: expired on "
    )
    assert validate.issuer_warnings(weak) == [
        "issuer: no CRL distribution point; Google expects a public HTTP CRL for the CA that "
        "issues users"
    ]
    assert validate.issuer_warnings(root) == [
        "issuer: no CRL distribution point; Google expects a public HTTP CRL for the CA that "
        "issues users",
        "issuer: pathLenConstraint is absent; 0 is recommended for a CA that issues users",
    ]


def test_issuer_without_key_cert_sign(now: dt.datetime) -> None:
    root_key = new_key("rsa")
    root = make_root(root_key, "Odd", now, 30)
    key = new_key("rsa")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=Odd CA"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=5))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    assert validate.issuer_violations(cert, [root], now) == [
        "issuer: not a CA (basicConstraints CA:TRUE missing)",
        "issuer: keyUsage lacks keyCertSign",
    ]


def test_sha1_leaf_in_a_chain_names_the_hash(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
) -> None:
    leaf = forge(make(spec), hierarchy.intermediate_key, sha1=True)
    with pytest.raises(CertificateError) as caught:
        validate.check_for_upload(
            leaf, [hierarchy.intermediate_cert], EMAIL, [hierarchy.root_cert], now
        )
    assert caught.value.violations == [
        "leaf: signed with SHA-1; Google accepts SHA-256, -384, -512",
        f"chain: signature of leaf {describe(leaf)} cannot be checked against "
        f"{describe(hierarchy.intermediate_cert)}: it is signed with SHA-1",
    ]


def test_uploaded_intermediate_as_trust_anchor(
    make: Callable[[LeafSpec], x509.Certificate],
    spec: LeafSpec,
    hierarchy: TestHierarchy,
    now: dt.datetime,
) -> None:
    leaf = make(spec)
    assert validate.chain_violations(leaf, [], [hierarchy.intermediate_cert], now) == []


def test_ed25519_leaf_key(
    make: Callable[[LeafSpec], x509.Certificate], spec: LeafSpec, now: dt.datetime
) -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    spec.public_key = key
    assert validate.leaf_violations(make(spec), EMAIL, now) == [
        "leaf: Ed25519PublicKey key; Google accepts RSA or EC P-256/P-384 keys"
    ]
