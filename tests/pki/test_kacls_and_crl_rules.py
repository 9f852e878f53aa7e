"""The KACLS's needs of a leaf (RSA, keyUsage) and the CRL distribution point advice."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from syncd.pki.extensions import load_extensions_file
from syncd.pki.profile import LeafProfile, crl_warnings
from syncd.pki.validate import kacls_violations
from tests.support.testca import TestHierarchy, new_key
from tests.support.testcerts import LeafSpec, build_leaf


def test_kacls_needs_an_rsa_leaf(hierarchy: TestHierarchy) -> None:
    rsa_leaf = build_leaf(LeafSpec("a@example.com", new_key("rsa").public_key()),
                          hierarchy.intermediate_cert, hierarchy.intermediate_key)
    assert kacls_violations(rsa_leaf) == []
    ec_key = ec.generate_private_key(ec.SECP384R1())
    ec_leaf = build_leaf(LeafSpec("a@example.com", ec_key.public_key()),
                         hierarchy.intermediate_cert, hierarchy.intermediate_key)
    assert kacls_violations(ec_leaf) == [
        "leaf: EC key on curve secp384r1; the KACLS decrypts and signs with RSA keys only: use "
        "an RSA 2048, 3072 or 4096 key"
    ]


def test_crl_advice(tmp_path: Path) -> None:
    http = LeafProfile(crl_distribution_points=("http://crl.example.com/i.crl",))
    assert crl_warnings(http) == []
    [empty] = crl_warnings(LeafProfile())
    assert empty.startswith("certificate.crl_distribution_points: empty; ")
    https = LeafProfile(crl_distribution_points=("https://crl.example.com/i.crl",))
    assert crl_warnings(https) == [
        "certificate.crl_distribution_points: https://crl.example.com/i.crl is not an http:// "
        "URL; CRLs are fetched over plain HTTP"
    ]
    with_crl, without = tmp_path / "with.cnf", tmp_path / "without.cnf"
    with_crl.write_text("[v3_ca]\ncrlDistributionPoints = URI:http://crl.example.com/i.crl\n")
    without.write_text("[v3_ca]\nkeyUsage = digitalSignature, keyEncipherment\n")
    profile = LeafProfile()
    assert crl_warnings(replace(profile, extensions=load_extensions_file(with_crl)), with_crl) == []
    [missing] = crl_warnings(replace(profile, extensions=load_extensions_file(without)), without)
    assert missing.startswith(
        f"certificate.extensions_file: {without} has no crlDistributionPoints"
    )
