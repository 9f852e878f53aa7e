"""Revision 0008 fills ``key_pairs.profile`` for the certificates issued before it, from the
certificates themselves, in the dialect of DesiredProfile.record: a credential issued with
today's settings shows no configuration drift, one issued otherwise shows exactly what
changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, text

from syncd.pki.chain import fingerprint
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from syncd.plan import DesiredProfile
from syncd.plan.reissue import differences
from syncd.state.db import create_engine_for, migrations_dir, upgrade
from tests.support.testca import TestHierarchy, make_test_hierarchy
from tests.support.testcerts import LeafSpec, build_leaf

NOW = datetime.now(UTC)
CRL = ("http://pki.example.com/issuing.crl",)
AIA_ISSUERS = ("http://pki.example.com/issuing.cer",)
AIA_OCSP = ("http://ocsp.example.com",)
PROFILE = LeafProfile(
    hash="sha384", crl_distribution_points=CRL, aia_ca_issuers=AIA_ISSUERS, aia_ocsp=AIA_OCSP
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def cas() -> dict[str, TestHierarchy]:
    """Two imported issuers, and a twin of the first (same names, other key) never imported."""
    return {
        "old-ca": make_test_hierarchy(organization="Old"),
        "other-ca": make_test_hierarchy(organization="Other"),
        "twin": make_test_hierarchy(organization="Old"),
    }


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _leaves(cas: dict[str, TestHierarchy]) -> dict[str, str]:
    """Certificate PEM by user: one as syncd issues it, others by hand."""
    old, other, twin = cas["old-ca"], cas["other-ca"], cas["twin"]
    key_3072 = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    key_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = issue_leaf(
        "issued@x.com",
        key_3072.public_key(),
        old.intermediate_cert,
        old.signer("sha384"),
        PROFILE,
        NOW,
    )
    aliases = [
        x509.RFC822Name("aliased@x.com"),
        x509.RFC822Name("Sales@x.com"),
        x509.RFC822Name("help@x.com"),
    ]
    spec = LeafSpec("aliased@x.com", key_2048.public_key(), san=aliases)
    return {
        "issued@x.com": _pem(issued),
        "aliased@x.com": _pem(build_leaf(spec, other.intermediate_cert, other.intermediate_key)),
        "unknown-issuer@x.com": _pem(
            build_leaf(
                LeafSpec("unknown-issuer@x.com", key_2048.public_key()),
                twin.intermediate_cert,
                twin.intermediate_key,
            )
        ),
        "garbled@x.com": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
        "-----END CERTIFICATE-----\n",
    }


def _fill_0007(engine: Engine, cas: dict[str, TestHierarchy], leaves: dict[str, str]) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007_kms_backend")
    with engine.begin() as connection:
        for label in ("old-ca", "other-ca"):
            issuer = cas[label].intermediate_cert
            connection.execute(
                text(
                    "INSERT INTO issuers (label, kms_private_key_id, certificate_pem, chain_pem, "
                    "subject, fingerprint_sha256, not_before, not_after, imported_at) VALUES "
                    "(:label, 'k', :pem, '', :subject, :fp, :nb, :na, :now)"
                ),
                {
                    "label": label,
                    "pem": _pem(issuer),
                    "subject": issuer.subject.rfc4514_string(),
                    "fp": fingerprint(issuer),
                    "nb": issuer.not_valid_before_utc,
                    "na": issuer.not_valid_after_utc,
                    "now": NOW,
                },
            )
        users = [*leaves, "pending@x.com"]
        for user_id, email in enumerate(users, start=1):
            connection.execute(
                text(
                    "INSERT INTO users (id, email, directory_id, source, in_scope, enabled, "
                    "first_seen, last_seen) VALUES (:id, :email, :email, 'static', true, true, "
                    ":now, :now)"
                ),
                {"id": user_id, "email": email, "now": NOW},
            )
            connection.execute(
                text(
                    "INSERT INTO key_pairs (id, user_id, generation, status, kms_label, "
                    "certificate_pem, created_at, updated_at) "
                    "VALUES (:id, :id, 1, 'active', 'l', :pem, :now, :now)"
                ),
                {"id": user_id, "pem": leaves.get(email), "now": NOW},
            )


def _profiles(engine: Engine) -> dict[str, dict[str, object] | None]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT users.email, key_pairs.profile FROM key_pairs "
                "JOIN users ON users.id = key_pairs.user_id"
            )
        ).all()
    return {
        email: json.loads(profile) if isinstance(profile, str) else profile
        for email, profile in rows
    }


def test_profiles_are_read_back_from_the_certificates(
    engine: Engine, cas: dict[str, TestHierarchy]
) -> None:
    _fill_0007(engine, cas, _leaves(cas))
    assert "0008_lifecycle" in upgrade(engine)
    found = _profiles(engine)

    assert found["issued@x.com"] == {
        "key_bits": 3072,
        "hash": "sha384",
        "crl": list(CRL),
        "aia_ca_issuers": list(AIA_ISSUERS),
        "aia_ocsp": list(AIA_OCSP),
        "issuer": "old-ca",
        "aliases": [],
    }
    assert found["aliased@x.com"] == {
        "key_bits": 2048,
        "hash": "sha256",
        "crl": [],
        "aia_ca_issuers": [],
        "aia_ocsp": [],
        "issuer": "other-ca",
        "aliases": ["help@x.com", "sales@x.com"],
    }
    # Same issuer name as an imported CA, another key: no issuer is claimed.
    unknown = found["unknown-issuer@x.com"]
    assert unknown is not None and "issuer" not in unknown and unknown["key_bits"] == 2048
    assert found["garbled@x.com"] is None
    assert found["pending@x.com"] is None  # no certificate yet

    # The plan reads the records in its own dialect: today's settings are no drift; a new
    # issuing CA and a larger key are exactly what changed.
    today = DesiredProfile(
        key_bits=3072, hash="sha384", crl=CRL, aia_ca_issuers=AIA_ISSUERS, aia_ocsp=AIA_OCSP,
        issuer="old-ca", subject_template="CN={local_part}",
    )  # fmt: skip
    issued = found["issued@x.com"]
    assert issued is not None
    assert differences(issued, today.record()) == []
    rolled = DesiredProfile(key_bits=4096, hash="sha384", crl=CRL, aia_ca_issuers=AIA_ISSUERS,
                            aia_ocsp=AIA_OCSP, issuer="new-ca")  # fmt: skip
    assert differences(issued, rolled.record()) == [
        "key_bits 3072 -> 4096",
        "issuer old-ca -> new-ca",
    ]
    # An upgrade run again changes nothing.
    assert upgrade(engine) == []
    assert _profiles(engine) == found
