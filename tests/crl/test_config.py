"""The ``crl`` section, and ``config check``'s advice on the CRL distribution point leaves carry
(judged on a leaf actually issued, read by openssl)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from syncd.config import parse_config
from syncd.errors import ConfigError
from syncd.pki.extensions import load_extensions_file
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile, crl_warnings
from tests.crl.conftest import OpenSSL
from tests.support.testca import make_test_hierarchy, new_key

URL = "http://crl.example.test/issuing.crl"


def test_the_crl_section(tmp_path: Path) -> None:
    default = parse_config({}).crl
    assert (default.output, default.validity, default.format) == (None, 7 * 86400, "der")
    config = parse_config(
        {"crl": {"output": "www/{issuer}.crl", "validity": "36h", "format": "pem"}},
        tmp_path / "syncd.yaml",
    )
    assert config.crl.output == tmp_path / "www" / "{issuer}.crl"  # relative to the file
    assert (config.crl.validity, config.crl.format) == (36 * 3600, "pem")
    with pytest.raises(ConfigError) as refused:
        parse_config({"crl": {"format": "txt"}})
    assert refused.value.where == "crl.format"
    with pytest.raises(ConfigError) as refused:
        parse_config({"crl": {"validity": "0s"}})
    assert refused.value.where == "crl.validity"


def test_no_warning_when_the_profile_fills_in_what_the_extensions_file_leaves_out(
    tmp_path: Path, openssl: OpenSSL
) -> None:
    without = tmp_path / "without.cnf"
    without.write_text("[v3_ca]\nkeyUsage = critical, digitalSignature, keyEncipherment\n"
                       "extendedKeyUsage = emailProtection\nbasicConstraints = critical, CA:FALSE\n"
                       "subjectAltName = email:copy\n")
    rules = load_extensions_file(without)
    filled = LeafProfile(crl_distribution_points=(URL,), extensions=rules)
    assert crl_warnings(filled, without) == []
    [warning] = crl_warnings(replace(filled, crl_distribution_points=()), without)
    assert warning.startswith(f"certificate.extensions_file: {without} has no "
                              "crlDistributionPoints and certificate.crl_distribution_points "
                              "is empty; leaves are issued without a CRL distribution point")

    ca = make_test_hierarchy(None)
    leaf = issue_leaf("a@example.com", new_key("rsa").public_key(), ca.intermediate_cert,
                      ca.signer(), filled, dt.datetime.now(dt.UTC))
    pem = tmp_path / "leaf.pem"
    pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    text = openssl("x509", "-in", pem, "-noout", "-ext", "crlDistributionPoints")
    assert text.returncode == 0, text.stderr
    assert f"URI:{URL}" in text.stdout
