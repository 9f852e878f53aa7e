"""Subject names from templates, and the leaf profile read from configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from syncd.config import CertificateConfig
from syncd.errors import ConfigError
from syncd.pki.profile import LeafProfile, escape_rfc4514, subject_for


def test_placeholders_and_order() -> None:
    name = subject_for("alice@example.com", "CN={email},OU={local_part},O={domain} Inc")
    assert name.rfc4514_string() == "CN=alice@example.com,OU=alice,O=example.com Inc"
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice@example.com"
    assert next(iter(name)).oid == NameOID.ORGANIZATION_NAME  # RFC 4514 lists the last RDN first


@pytest.mark.parametrize(
    "email",
    [
        "a+b@example.com",
        'we,ird"@example.com',
        "back\\slash@example.com",
        "semi;colon=@x.org",
        "#hash@example.com",
        " space @example.com",
        "<angle>@example.com",
    ],
)
def test_values_are_escaped(email: str) -> None:
    name = subject_for(email, "CN={email},O=Example")
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == email
    assert len(name) == 2
    assert x509.Name.from_rfc4514_string(name.rfc4514_string()) == name


def test_escape_rfc4514() -> None:
    assert escape_rfc4514("a+b,c") == "a\\+b\\,c"
    assert escape_rfc4514(" x ") == "\\ x\\ "
    assert escape_rfc4514("#x#") == "\\#x#"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("CN={email},garbage", "gives no valid RFC 4514 name"),
        ("CN={mail}", "unknown placeholder {mail}"),
        ("", "the subject template is empty"),
        ("XX={email}", "gives no valid RFC 4514 name"),
        ("CN=" + "x" * 64 + "{email}", "length must be"),
    ],
)
def test_bad_templates(template: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        subject_for("alice@example.com", template)
    assert caught.value.where == "certificate.subject_template"
    assert problem in caught.value.problem


def test_not_an_email() -> None:
    with pytest.raises(ConfigError, match="'alice' is not an email address"):
        subject_for("alice", "CN={email}")


def test_from_config(tmp_path: Path) -> None:
    ext = tmp_path / "leaf.cnf"
    ext.write_text("[v3_ca]\nsubjectAltName=email:copy\nextendedKeyUsage=emailProtection\n")
    cfg = CertificateConfig(
        hash="sha384",
        validity_days=90,
        subject_template="CN={email},O=Example",
        crl_distribution_points=["http://crl.example.com/a.crl"],
        aia_ca_issuers=["http://ca.example.com/a.crt"],
        aia_ocsp=["http://ocsp.example.com"],
        extensions_file=ext,
    )
    profile = LeafProfile.from_config(cfg)
    assert (profile.hash, profile.validity_days) == ("sha384", 90)
    assert profile.crl_distribution_points == ("http://crl.example.com/a.crl",)
    assert profile.aia_ca_issuers == ("http://ca.example.com/a.crt",)
    assert profile.aia_ocsp == ("http://ocsp.example.com",)
    assert profile.extensions is not None
    assert [r.name for r in profile.extensions] == ["subjectAltName", "extendedKeyUsage"]
    assert LeafProfile.from_config(CertificateConfig()).extensions is None


def test_from_config_reports_bad_template_and_extensions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^certificate.subject_template: "):
        LeafProfile.from_config(CertificateConfig(subject_template="CN={email},nonsense"))
    ext = tmp_path / "leaf.cnf"
    ext.write_text("[v3_ca]\n\nkeyUsage=digitalSignature,teleport\n")
    with pytest.raises(ConfigError, match=rf"^{ext}:3: keyUsage: unknown keyUsage 'teleport'"):
        LeafProfile.from_config(CertificateConfig(extensions_file=ext))


@pytest.mark.parametrize(
    ("email", "template", "common_name"),
    [
        ("a" * 40 + "@" + "b" * 30 + ".example", "CN={email}", "a" * 40),
        ("a" * 40 + "@" + "b" * 30 + ".example", "CN=Staff {email}", "Staff " + "a" * 40),
        ("a" * 70 + "@example.com", "CN={email},O=Example", "a" * 64),
        ("a" * 70 + "@example.com", "CN={local_part} at {domain}", "a" * 64),
        ("alice@example.com", "CN={email}", "alice@example.com"),
    ],
)
def test_common_name_is_cut_to_64_characters(email: str, template: str, common_name: str) -> None:
    name = subject_for(email, template)
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name


def test_check_certifiable() -> None:
    from syncd.errors import UncertifiableAddressError
    from syncd.pki.profile import check_certifiable

    check_certifiable("jose@example.com")
    with pytest.raises(UncertifiableAddressError, match="josé@example.com: internationalised"):
        check_certifiable("josé@example.com")
    with pytest.raises(UncertifiableAddressError, match="internationalised domain"):
        check_certifiable("jose@exämple.com")
