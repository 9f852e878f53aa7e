"""``syncd google key-pairs create`` options: the subject and extensions overrides, option
combinations refused as usage errors, and the run lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .conftest import (
    Deployment,
    audit_events,
    error_line,
    gmail_state,
    make_leaf,
    manual_kms_keys,
    ok,
    write_pkcs12,
)

POLICY = "1.3.6.1.4.1.55555.1.2"
EXTENSIONS = f"""
[v3_ca]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment
extendedKeyUsage = emailProtection, clientAuth
subjectAltName = email:copy
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
certificatePolicies = {POLICY}
crlDistributionPoints = URI:http://crl.example.com/override.crl
"""


def _leaf(deploy: Deployment, user: str) -> x509.Certificate:
    keypairs, _ = gmail_state(deploy, user)
    assert len(keypairs) == 1
    return x509.load_pem_x509_certificates(keypairs[0]["pem"].encode())[0]


def test_subject_name_and_extensions_file_apply_to_this_certificate(
    deployment: Deployment, tmp_path: Path
) -> None:
    user = "user20@example.com"
    extensions = tmp_path / "leaf.ext"
    extensions.write_text(EXTENSIONS)
    ok(
        deployment,
        "google",
        "key-pairs",
        "create",
        user,
        "--subject-name",
        "CN={local_part},OU=Mail,O=Override Inc",
        "--leaf-certificate-extensions",
        str(extensions),
    )
    leaf = _leaf(deployment, user)
    assert leaf.subject.rfc4514_string() == "CN=user20,OU=Mail,O=Override Inc"
    policies = leaf.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [POLICY]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.data_encipherment

    # The overrides were for that one certificate: the next one follows the configuration.
    other = "user21@example.com"
    ok(deployment, "google", "key-pairs", "create", other)
    plain = _leaf(deployment, other)
    assert plain.subject.rfc4514_string() == f"CN={other}"
    assert not any(isinstance(e.value, x509.CertificatePolicies) for e in plain.extensions)


def test_an_extensions_file_google_would_refuse_uploads_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    user = "user22@example.com"
    extensions = tmp_path / "no-email.ext"
    extensions.write_text(EXTENSIONS.replace("emailProtection, ", ""))
    message = error_line(
        deployment,
        2,
        "google",
        "key-pairs",
        "create",
        user,
        "--leaf-certificate-extensions",
        str(extensions),
    )
    assert message == (
        f"certificate for {user} rejected: leaf: extendedKeyUsage lacks emailProtection"
    )
    assert gmail_state(deployment, user) == ([], None)
    assert manual_kms_keys(deployment, user) == ["revoked"]
    assert audit_events(deployment, user) == []


def test_bad_options_are_usage_errors(deployment: Deployment, tmp_path: Path) -> None:
    user = "user23@example.com"
    create = ("google", "key-pairs", "create", user)
    broken = tmp_path / "broken.ext"
    broken.write_text("[v3_ca]\nkeyUsage = digitalSignature, sendsMail\n")
    message = error_line(deployment, 2, *create, "--leaf-certificate-extensions", str(broken))
    assert message.startswith(f"{broken}:2: keyUsage: unknown keyUsage 'sendsMail'")
    missing = tmp_path / "missing.ext"
    message = error_line(deployment, 2, *create, "--leaf-certificate-extensions", str(missing))
    assert message.startswith(f"{missing}: cannot read the extensions file")
    message = error_line(deployment, 2, *create, "--subject-name", "CN={user}")
    assert message.startswith("--subject-name: unknown placeholder {user}")

    key, leaf = make_leaf(deployment, user)
    p12, password = write_pkcs12(tmp_path, "leaf", key, leaf, [])
    with_p12 = (*create, "--leaf-certificate-pkcs12-file", str(p12))
    message = error_line(deployment, 2, *with_p12, "--rsa-bits", "4096")
    assert message == (
        "--rsa-bits: cannot be used with --leaf-certificate-pkcs12-file "
        "(the certificate and key are taken as they are)"
    )
    message = error_line(deployment, 2, *with_p12, "--subject-name", "CN=x")
    assert message.startswith("--subject-name: cannot be used with")
    message = error_line(deployment, 2, *create, "--leaf-certificate-pkcs12-password-file",
                         str(password))
    assert message == (
        "--leaf-certificate-pkcs12-password-file: only used with --leaf-certificate-pkcs12-file"
    )
    message = error_line(
        deployment, 2, *create, "--leaf-certificate-pkcs12-file", str(tmp_path / "none.p12")
    )
    assert message.startswith(f"--leaf-certificate-pkcs12-file: cannot read {tmp_path}/none.p12")

    assert deployment.writes().get("keypairs.create", 0) == 0
    assert manual_kms_keys(deployment, user) == []


def test_writes_are_refused_while_another_process_holds_the_run_lock(
    deployment: Deployment,
) -> None:
    user = "user24@example.com"
    key_pair_id = ok(deployment, "google", "key-pairs", "create", user).strip()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from syncd.config import load_config\n"
            "from syncd.state.lock import acquire\n"
            "c = load_config(Path(sys.argv[1]))\n"
            "with acquire(c.state.url, lock_file=c.state.lock_file):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
            str(deployment.config_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        writes = [
            ("key-pairs", "create", user),
            ("key-pairs", "disable", user, key_pair_id),
            ("identities", "insert", user, key_pair_id),
        ]
        for args in writes:
            message = error_line(deployment, 3, "google", *args)
            assert "holds the run lock" in message
        # Reads need no lock.
        assert key_pair_id in ok(deployment, "google", "key-pairs", "list", user)
    finally:
        holder.kill()
        holder.wait()
    keypairs, identity = gmail_state(deployment, user)
    assert [(kp["keyPairId"], kp["enablementState"]) for kp in keypairs] == [
        (key_pair_id, "enabled")
    ]
    assert identity is None
    assert manual_kms_keys(deployment, user) == ["active"]
    assert [e["action"] for e in audit_events(deployment, user)] == ["google.keypair.created"]
