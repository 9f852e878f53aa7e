"""The CRL syncd publishes, end to end: passes against the sandbox over HTTP (static
directory, embedded KMS holding the issuer, SQLite state), ``syncd crl`` and ``syncd revoke``
run as commands, and every CRL judged by openssl: it parses, its signature verifies against
the issuer, and ``openssl verify -crl_check`` refuses the revoked certificates while it accepts
the active ones.

One deployment for the module (a story in order, each test building on the one before) keeps
it fast; the tests must run in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from syncd.app.context import App
from syncd.app.crl import refresh_if_due
from syncd.app.passes import resync, sync_pass
from syncd.cli import main
from syncd.domain import KeyPairStatus
from syncd.pki.crl import load_crl
from syncd.state.models import AuditEvent, KeyPair, Revocation, User
from tests.conftest import _migrate
from tests.crl.conftest import OpenSSL, openssl_hex
from tests.pipeline.conftest import (
    Deployment,
    build_deployment,
    import_pipeline_issuer,
    sandbox_users,
)
from tests.support.testca import TestHierarchy, make_test_hierarchy

P12_PASSWORD = b"pipeline-test"  # what import_pipeline_issuer opens the PKCS#12 with
USERS = sandbox_users(4)
GONE, KEPT, COMPROMISED, REPLACED = USERS
CRL_URL = "http://pki.example.test/issuing.crl"


@dataclass
class Setting:
    deploy: Deployment
    crl_file: Path
    chain: Path
    work: Path

    def app(self) -> App:
        return self.deploy.app()

    def certificate(self, email: str, status: KeyPairStatus) -> x509.Certificate:
        """The user's newest certificate with ``status``."""
        with self.app() as app, app.database.sessions() as session:
            pem = session.scalars(
                select(KeyPair.certificate_pem)
                .join(User)
                .where(User.email == email, KeyPair.status == status)
                .order_by(KeyPair.generation.desc())
            ).first()
        assert pem, f"{email}: no {status} certificate"
        return x509.load_pem_x509_certificate(pem.encode())

    def pem_file(self, certificate: x509.Certificate) -> Path:
        path = self.work / f"{certificate.serial_number:x}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def sync(self) -> None:
        with self.app() as app:
            result = sync_pass(app)
        assert result.clean, result.summary()


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setting]:
    root = tmp_path_factory.mktemp("crl-publish")
    ca: TestHierarchy = make_test_hierarchy(root / "ca", password=P12_PASSWORD)
    url = f"sqlite:///{root / 'state.db'}"
    _migrate(url)
    deploy = build_deployment(root, url, ca)
    try:
        import_pipeline_issuer(deploy, ca)
        crl_file = root / "www" / "issuing.crl"
        deploy.update_config(
            crl={"output": str(crl_file)},
            certificate={"crl_distribution_points": [CRL_URL]},
            policy={"deprovision_after": 0},
            pipeline={"workers": 2},
        )
        deploy.set_users(USERS)
        chain = root / "chain.pem"
        chain.write_bytes(b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (ca.intermediate_cert, ca.root_cert)
        ))
        work = root / "work"
        work.mkdir()
        yield Setting(deploy, crl_file, chain, work)
    finally:
        deploy.sandbox.stop()


def _check(setting: Setting, openssl: OpenSSL, crl_file: Path, certificate: x509.Certificate,
           inform: str = "DER") -> tuple[bool, str]:
    """openssl's verdict on ``certificate`` with the CRL (and the CRL's own signature)."""
    signed = openssl("crl", "-inform", inform, "-in", crl_file, "-noout", "-CAfile", setting.chain)
    assert signed.returncode == 0 and "verify OK" in signed.stdout + signed.stderr, signed.stderr
    pem_crl = crl_file
    if inform == "DER":  # openssl verify -CRLfile reads PEM
        pem_crl = crl_file.with_suffix(".pem")
        converted = openssl("crl", "-inform", "DER", "-in", crl_file, "-out", pem_crl)
        assert converted.returncode == 0, converted.stderr
    verdict = openssl("verify", "-crl_check", "-CAfile", setting.chain, "-CRLfile", pem_crl,
                      setting.pem_file(certificate))
    return verdict.returncode == 0, verdict.stdout + verdict.stderr


def _serials(crl_file: Path) -> dict[int, str]:
    """Serial -> reason name (``unspecified`` when the entry carries none) of a CRL file."""
    found = {}
    for entry in load_crl(crl_file.read_bytes()):
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        found[entry.serial_number] = reason
    return found


def test_the_first_pass_publishes_an_empty_crl(setting: Setting, openssl: OpenSSL) -> None:
    setting.sync()
    text = openssl("crl", "-inform", "DER", "-in", setting.crl_file, "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert "No Revoked Certificates." in text.stdout
    assert "X509v3 CRL Number: \n                1\n" in text.stdout
    ok, said = _check(setting, openssl, setting.crl_file,
                      setting.certificate(KEPT, KeyPairStatus.ACTIVE))
    assert ok, said
    leaf = setting.certificate(KEPT, KeyPairStatus.ACTIVE)
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [p.full_name[0].value for p in points if p.full_name] == [CRL_URL]


def test_after_a_deprovision_the_crl_refuses_that_certificate(
    setting: Setting, openssl: OpenSSL
) -> None:
    gone = setting.certificate(GONE, KeyPairStatus.ACTIVE)
    kept = setting.certificate(KEPT, KeyPairStatus.ACTIVE)
    setting.deploy.set_users([u for u in USERS if u != GONE])
    setting.sync()
    # The pass refreshed crl.output: the revocation changed what it must list.
    assert _serials(setting.crl_file) == {gone.serial_number: "cessationOfOperation"}

    out = setting.work / "syncd.crl"
    done = setting.deploy.syncd("crl", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert f"to {out} (der, 1 revoked" in done.stdout
    text = openssl("crl", "-inform", "DER", "-in", out, "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert f"Serial Number: {openssl_hex(gone.serial_number)}\n" in text.stdout
    assert "Cessation Of Operation" in text.stdout
    refused, said = _check(setting, openssl, out, gone)
    assert not refused and "certificate revoked" in said
    accepted, said = _check(setting, openssl, out, kept)
    assert accepted, said

    with setting.app() as app, app.database.sessions() as session:
        [row] = session.scalars(select(Revocation))
        events = [e.action for e in session.scalars(
            select(AuditEvent).where(AuditEvent.email == GONE).order_by(AuditEvent.id))]
    assert (row.email, row.reason, row.serial_hex) == (
        GONE, "cessationOfOperation", format(gone.serial_number, "x"))
    assert row.issuer_label == "pipeline" and row.key_pair_id is not None
    assert "deprovision.certificate_revoked" in events


def test_pem_to_standard_output_and_crl_numbers_increase(
    setting: Setting, openssl: OpenSSL
) -> None:
    refused = setting.deploy.syncd("crl", "--format", "pem")
    assert refused.returncode == 2
    assert "--format: crl.output is published as der (crl.format); give --output FILE for a pem" \
        in refused.stderr
    done = setting.deploy.syncd("crl", "--format", "pem", "--output", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-----BEGIN X509 CRL-----")
    pem = setting.work / "stdout.pem"
    pem.write_text(done.stdout)
    refused, said = _check(setting, openssl, pem,
                           setting.certificate(GONE, KeyPairStatus.DISABLED), inform="PEM")
    assert not refused and "certificate revoked" in said
    files = (setting.crl_file, setting.work / "syncd.crl", pem)
    values = [load_crl(path.read_bytes()).extensions.get_extension_for_class(x509.CRLNumber)
              .value.crl_number for path in files]
    assert values == sorted(values) and len(set(values)) == 3


def test_revoke_key_compromise_lists_it_and_the_next_pass_replaces_it(
    setting: Setting, openssl: OpenSSL
) -> None:
    old = setting.certificate(COMPROMISED, KeyPairStatus.ACTIVE)
    done = setting.deploy.syncd("revoke", "--user", COMPROMISED, "--reason", "keyCompromise")
    assert done.returncode == 0, done.stderr
    assert f"revoked {old.serial_number:x} (issuing CA 'pipeline')" in done.stdout
    assert f"the next pass replaces the credential of {COMPROMISED}" in done.stdout

    setting.sync()
    new = setting.certificate(COMPROMISED, KeyPairStatus.ACTIVE)
    assert new.serial_number != old.serial_number
    listed = _serials(setting.crl_file)
    # The replacement's own "superseded" does not soften the recorded keyCompromise.
    assert listed[old.serial_number] == "keyCompromise"
    refused, said = _check(setting, openssl, setting.crl_file, old)
    assert not refused and "certificate revoked" in said
    accepted, said = _check(setting, openssl, setting.crl_file, new)
    assert accepted, said

    again = setting.deploy.syncd("revoke", "--user", COMPROMISED, "--reason", "keyCompromise",
                                 "--format", "json")
    assert again.returncode == 0, again.stderr
    assert f'"already_revoked": [\n      "{old.serial_number:x}"' in again.stdout


def test_a_forced_replacement_revokes_the_previous_certificate_as_superseded(
    setting: Setting, openssl: OpenSSL
) -> None:
    old = setting.certificate(REPLACED, KeyPairStatus.ACTIVE)
    with setting.app() as app:
        result = resync(app, [REPLACED], force=True)
    assert not result.failures
    assert _serials(setting.crl_file)[old.serial_number] == "superseded"
    refused, said = _check(setting, openssl, setting.crl_file, old)
    assert not refused and "certificate revoked" in said


def test_the_pass_writes_the_crl_again_only_when_due(setting: Setting) -> None:
    before = setting.crl_file.read_bytes()
    validity = timedelta(days=7)  # crl.validity's default
    now = datetime.now(UTC)
    with setting.app() as app, app.run_lock() as fence:
        assert refresh_if_due(app, fence, now) == []
        assert refresh_if_due(app, fence, now + validity * 0.4) == []
        [late] = refresh_if_due(app, fence, now + validity * 0.6)
        setting.crl_file.unlink()
        [missing] = refresh_if_due(app, fence, now)
    setting.deploy.update_config(crl={"format": "pem"})
    with setting.app() as app, app.run_lock() as fence:
        [pem] = refresh_if_due(app, fence, now)
        assert refresh_if_due(app, fence, now) == []
    setting.deploy.update_config(crl={"format": "der"})
    assert setting.crl_file.read_bytes().startswith(b"-----BEGIN X509 CRL-----")
    assert late.number + 1 == missing.number < pem.number
    with setting.app() as app, app.run_lock() as fence:
        [der] = refresh_if_due(app, fence, now)
    assert setting.crl_file.read_bytes() != before
    assert der.data == setting.crl_file.read_bytes() and not der.data.startswith(b"-----")
    assert load_crl(setting.crl_file.read_bytes()).next_update_utc == (
        now.replace(microsecond=0) + validity
    )


def test_revoke_refuses_an_unknown_user_and_an_unknown_reason(
    setting: Setting, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(setting.deploy.config_path), "revoke", "--user"]
    assert main([*config, "nobody@example.com", "--reason", "keyCompromise"]) == 2
    assert capsys.readouterr().err == (
        "syncd: --user: syncd manages no user nobody@example.com (see `syncd status`)\n"
    )
    assert main([*config, KEPT, "--reason", "stolen"]) == 2
    assert capsys.readouterr().err == (
        "syncd: --reason: 'stolen' is not one of keyCompromise, superseded, affiliationChanged, "
        "cessationOfOperation, privilegeWithdrawn, unspecified\n"
    )


def test_a_crl_that_cannot_be_written_does_not_fail_the_pass(
    setting: Setting, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = setting.work / "not-a-folder"
    blocked.write_text("a file where crl.output wants a folder\n")
    setting.deploy.update_config(crl={"output": str(blocked / "issuing.crl")})
    try:
        setting.sync()  # clean: the pass's credentials are done
        with setting.app() as app, app.database.sessions() as session:
            failed = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "crl.failed")
            ).all()
    finally:
        setting.deploy.update_config(crl={"output": str(setting.crl_file)})
    assert [event.detail["path"] for event in failed] == [str(blocked / "issuing.crl")]
    assert "cannot write the CRL of 'pipeline' to " in failed[0].detail["error"]
    assert f"the CRL of 'pipeline' at {blocked / 'issuing.crl'} (unreadable (" in caplog.text
    assert ") was not written: cannot write the CRL of 'pipeline' to " in caplog.text
