"""Email delivery against a real SMTP server (aiosmtpd) with STARTTLS and a test CA made here.

A failed delivery never loses the report: it is written first, the failure is logged, and
the exit code is 1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import Store

USER = "report-bot"
PASSWORD = "s3cret-smtp-Pa55word"


@dataclass
class TestCA:
    __test__ = False
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A root CA and a server certificate for 127.0.0.1 and localhost, made for this run."""
    folder = tmp_path_factory.mktemp("smtp-ca")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd report test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    found = TestCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    found.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return found


@dataclass
class Inbox:
    """What the server received: messages (with the TLS state of their session) and logins."""

    messages: list[tuple[EmailMessage, bool, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((parsed, session.ssl is not None, list(envelope.rcpt_tos)))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (login, password) == (USER, PASSWORD)
        self.logins.append((login, ok))
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox


def _serve(test_ca: TestCA | None) -> Iterator[SmtpServer]:
    inbox = Inbox()
    options: dict[str, Any] = {}
    if test_ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(test_ca.cert_file, test_ca.key_file)
        options = {
            "tls_context": context,
            "require_starttls": True,
            "authenticator": inbox.authenticate,
            "auth_require_tls": True,
        }
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer(port, inbox)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server(test_ca: TestCA) -> Iterator[SmtpServer]:
    """STARTTLS required, AUTH only after STARTTLS, one known user."""
    yield from _serve(test_ca)


@pytest.fixture
def plain_smtp_server() -> Iterator[SmtpServer]:
    """A server that offers no STARTTLS."""
    yield from _serve(None)


def _email_settings(port: int, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "username": USER,
        "password_env": "SYNCD_TEST_SMTP_PASSWORD",
        "sender": "syncd@example.com",
        "recipients": ["security@example.com", "it@example.com"],
        "timeout": "10s",
    }
    settings.update(overrides)
    return {key: value for key, value in settings.items() if value is not None}


def _run(store: Store, settings: dict[str, Any], output: Path) -> Any:
    config = store.config(email=settings)
    text = config.read_text().replace("format: text", "format: text\n  level: DEBUG")
    config.write_text(text)
    return store.syncd(
        "report",
        "--output",
        str(output),
        config=config,
        env={"SYNCD_TEST_SMTP_PASSWORD": PASSWORD},
    )


def test_delivered_over_starttls(store: Store, smtp_server: SmtpServer, test_ca: TestCA) -> None:
    output = store.root / "report.html"
    done = _run(store, _email_settings(smtp_server.port, ca_file=str(test_ca.ca_file)), output)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "report emailed to 2 recipient(s)" in done.stderr
    assert output.read_text().startswith("<!DOCTYPE html>")
    assert smtp_server.inbox.logins == [(USER, True)]
    [(message, over_tls, recipients)] = smtp_server.inbox.messages
    assert over_tls
    assert recipients == ["security@example.com", "it@example.com"]
    assert message["From"] == "syncd@example.com"
    assert message["Subject"] == "syncd report: 70% covered, 2 failure(s), 3 expiring"
    body = message.get_body(("plain",))
    assert body is not None and "percent covered            70.0" in body.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/html"
    assert str(attachment.get_filename()).startswith("syncd-report-")
    assert attachment.get_content() == output.read_text()


def test_untrusted_server_certificate(store: Store, smtp_server: SmtpServer) -> None:
    """TLS verification is on by default: the system CAs do not know the test CA."""
    output = store.root / "report.html"
    done = _run(store, _email_settings(smtp_server.port), output)
    assert done.returncode == 1
    assert "report email not sent" in done.stderr
    assert "certificate was not accepted: unable to get local issuer certificate" in done.stderr
    assert "syncd: the report was not emailed:" in done.stderr
    assert output.read_text().startswith("<!DOCTYPE html>")  # never lost
    assert smtp_server.inbox.messages == [] and smtp_server.inbox.logins == []
    assert PASSWORD not in done.stdout + done.stderr


def test_verification_off_only_when_asked(store: Store, smtp_server: SmtpServer) -> None:
    output = store.root / "report.html"
    done = _run(store, _email_settings(smtp_server.port, tls_verify=False), output)
    assert done.returncode == 0, done.stderr
    assert len(smtp_server.inbox.messages) == 1


def test_wrong_password(store: Store, smtp_server: SmtpServer, test_ca: TestCA) -> None:
    output = store.root / "report.json"
    settings = _email_settings(
        smtp_server.port,
        ca_file=str(test_ca.ca_file),
        password_env=None,
        password_file=str(store.root / "smtp.pass"),
    )
    (store.root / "smtp.pass").write_text("not-the-password\n")
    done = _run(store, settings, output)
    assert done.returncode == 1
    assert f"127.0.0.1:{smtp_server.port} refused the login of {USER}: 535" in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN): all refused.
    logins = smtp_server.inbox.logins
    assert logins and all(login == (USER, False) for login in logins)
    assert smtp_server.inbox.messages == []
    assert output.read_text().startswith("{")


def test_no_starttls_no_mail(store: Store, plain_smtp_server: SmtpServer) -> None:
    output = store.root / "report.html"
    done = _run(store, _email_settings(plain_smtp_server.port), output)
    assert done.returncode == 1
    assert "does not offer STARTTLS; the report was not sent in clear" in done.stderr
    assert plain_smtp_server.inbox.messages == []
    assert output.exists()


def test_unreachable_server(store: Store) -> None:
    output = store.root / "report.html"
    done = _run(store, _email_settings(_free_port()), output)
    assert done.returncode == 1
    assert "cannot send the report through 127.0.0.1:" in done.stderr
    assert output.exists()


def test_no_email_flag(store: Store, smtp_server: SmtpServer, test_ca: TestCA) -> None:
    config = store.config(
        email=_email_settings(smtp_server.port, ca_file=str(test_ca.ca_file))
    )
    done = store.syncd("report", "--no-record", "--no-email", config=config)
    assert done.returncode == 0, done.stderr
    assert smtp_server.inbox.messages == []
