"""A throwaway PyKMIP server for tests and benchmarks: TLS 1.2 with client certificates.

Each start makes its own CA, a server certificate for 127.0.0.1 and client certificates
(clientAuth EKU, as PyKMIP requires), writes them with mode 0600, and runs ``pykmip-server``
from the installed PyKMIP on a free port. A missing ``pykmip-server`` is an error, never a skip.

Besides the good client, each start also makes what the error tests need: a client certificate
from a CA the server does not trust, and a second CA whose server certificate the client must
refuse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

STARTUP_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
    usage: x509.ObjectIdentifier,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    ca_cert, ca_key = ca
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class ClientFiles:
    """What a KMIP client presents and trusts."""

    certificate: Path
    key: Path
    ca: Path


@dataclass
class PyKmipServer:
    """A running PyKMIP server and the files its clients need."""

    host: str
    port: int
    folder: Path
    client: ClientFiles
    """A certificate the server accepts, and the CA that signed the server's certificate."""
    stranger: ClientFiles
    """A client certificate from a CA the server does not trust (the server refuses it)."""
    colleague: ClientFiles
    """Another administrator the server trusts: PyKMIP lets a client use only the objects it
    created, so this one is refused the objects ``client`` made (permission denied)."""
    other_ca: Path
    """A CA that did not sign the server's certificate (a client trusting only it must refuse)."""
    process: subprocess.Popen[bytes]

    def kmip_section(
        self, files: ClientFiles | None = None, **overrides: object
    ) -> dict[str, object]:
        """The ``kms.kmip`` settings of a client of this server, presenting ``files`` (default:
        the accepted client), with ``overrides`` (another port, a timeout...) on top."""
        who = files or self.client
        section: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "client_certificate_file": str(who.certificate),
            "client_key_file": str(who.key),
            "ca_file": str(who.ca),
        }
        section.update(overrides)
        return section

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server and the processes it forked. SIGKILL: PyKMIP waits 10-12 s for its
        accept loop on SIGTERM, and its SQLite database is thrown away with the folder.

        ``pykmip-server`` forks a ``multiprocessing`` manager and a policy-directory monitor
        that outlive a SIGKILL of the parent alone; the server runs in a session of its own
        (``start_new_session``), so the whole process group goes."""
        with contextlib.suppress(ProcessLookupError):  # every member has exited already
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def pykmip_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "pykmip-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("pykmip-server")
    if found is None:
        raise RuntimeError(
            "pykmip-server not found: install the test dependencies (pip install -e '.[test]')"
        )
    return found


def _wait_listening(server: PyKmipServer) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"pykmip-server exited with {server.process.returncode}:\n{server.log()[-3000:]}"
            )
        try:
            with socket.create_connection((server.host, server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"pykmip-server did not listen within {STARTUP_SECONDS}s:\n{server.log()}")


def start_pykmip_server(folder: Path) -> PyKmipServer:
    """Make certificates in ``folder`` and start a server there; ``stop()`` it when done."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca("syncd test KMIP CA")
    other = _ca("syncd test other CA")
    server_cert, server_key = _leaf("127.0.0.1", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    client_cert, client_key = _leaf("syncd", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger_cert, stranger_key = _leaf("stranger", other, ExtendedKeyUsageOID.CLIENT_AUTH)

    ca_pem = _write(folder / "ca.pem", _pem_cert(ca[0]))
    other_pem = _write(folder / "other-ca.pem", _pem_cert(other[0]))
    _write(folder / "server.pem", _pem_cert(server_cert))
    _write(folder / "server.key", _pem_key(server_key))
    client = ClientFiles(
        _write(folder / "client.pem", _pem_cert(client_cert)),
        _write(folder / "client.key", _pem_key(client_key)),
        ca_pem,
    )
    stranger = ClientFiles(
        _write(folder / "stranger.pem", _pem_cert(stranger_cert)),
        _write(folder / "stranger.key", _pem_key(stranger_key)),
        ca_pem,
    )
    colleague_cert, colleague_key = _leaf("colleague", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    colleague = ClientFiles(
        _write(folder / "colleague.pem", _pem_cert(colleague_cert)),
        _write(folder / "colleague.key", _pem_key(colleague_key)),
        ca_pem,
    )
    port = _free_port()
    (folder / "policies").mkdir(exist_ok=True)
    (folder / "server.conf").write_text(
        "[server]\n"
        "hostname=127.0.0.1\n"
        f"port={port}\n"
        f"certificate_path={folder / 'server.pem'}\n"
        f"key_path={folder / 'server.key'}\n"
        f"ca_path={ca_pem}\n"
        "auth_suite=TLS1.2\n"
        "enable_tls_client_auth=True\n"
        f"policy_path={folder / 'policies'}\n"
        f"database_path={folder / 'pykmip.db'}\n"
        "logging_level=INFO\n"
    )
    process = subprocess.Popen(
        [pykmip_server_binary(), "-f", str(folder / "server.conf"), "-l",
         str(folder / "server.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=folder,
        start_new_session=True,  # its own process group: stop() kills the forked children too
    )
    server = PyKmipServer(
        "127.0.0.1", port, folder, client, stranger, colleague, other_pem, process
    )
    _wait_listening(server)
    return server
