"""A throwaway OpenLDAP ``slapd`` on 127.0.0.1, for the LDAP source's tests and benchmark.

It writes a ``slapd.conf`` (mdb database, schemas core, cosine, inetorgperson and nis, one
suffix and its root DN), loads LDIF with ``slapadd`` before starting, and runs slapd in the
foreground on free ports: plain LDAP (which also offers StartTLS) and, with certificates,
``ldaps://``. Passwords are written as salted SHA-1 hashes, never in clear.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from syncd.errors import SyncdError

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
INSTALL_HINT = "install it with: apt-get install -y slapd ldap-utils"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


class SlapdError(SyncdError):
    """slapd is missing, or did not load or start."""


def ssha(password: str) -> str:
    """The ``{SSHA}`` hash slapd accepts for rootpw and userPassword."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def check_installed() -> None:
    """SlapdError naming the apt command when slapd, slapadd or the schemas are missing."""
    for path in (SLAPD, SLAPADD, *(SCHEMA_DIR / f"{s}.schema" for s in SCHEMAS)):
        if not path.exists():
            raise SlapdError(f"{path} not found: OpenLDAP slapd is not installed; {INSTALL_HINT}")


@dataclass(frozen=True)
class SlapdTLS:
    ca_file: Path
    cert_file: Path
    key_file: Path


class Slapd:
    """One slapd process serving ``suffix`` from its own folder."""

    def __init__(
        self,
        folder: Path,
        *,
        root_password: str,
        suffix: str = "dc=example,dc=org",
        tls: SlapdTLS | None = None,
        extra_config: str = "",
    ) -> None:
        check_installed()
        self.folder = folder
        self.suffix = suffix
        self.root_dn = f"cn=admin,{suffix}"
        self.tls = tls
        self.port = free_port()
        self.ldaps_port = free_port() if tls else None
        self.process: subprocess.Popen[bytes] | None = None
        (folder / "data").mkdir(parents=True, exist_ok=True)
        self.config_file = folder / "slapd.conf"
        self.log_file = folder / "slapd.log"
        self._root_hash = ssha(root_password)
        self.configure(extra_config)

    def configure(self, extra_config: str = "") -> None:
        """(Re)write slapd.conf with ``extra_config`` appended to the database section (limits,
        access rules); a running slapd reads it at its next start."""
        self.config_file.write_text(self._config(extra_config))

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def ldaps_url(self, host: str = "localhost") -> str:
        if self.ldaps_port is None:
            raise SlapdError("this slapd has no TLS certificate, so no ldaps:// listener")
        return f"ldaps://{host}:{self.ldaps_port}"

    def _config(self, extra_config: str) -> str:
        lines = [f"include {SCHEMA_DIR / s}.schema" for s in SCHEMAS]
        lines += [
            f"pidfile {self.folder / 'slapd.pid'}",
            f"argsfile {self.folder / 'slapd.args'}",
            "moduleload back_mdb" if Path("/usr/lib/ldap/back_mdb.la").exists() else "",
        ]
        if self.tls:
            lines += [
                f"TLSCACertificateFile \"{self.tls.ca_file}\"",
                f"TLSCertificateFile \"{self.tls.cert_file}\"",
                f"TLSCertificateKeyFile \"{self.tls.key_file}\"",
            ]
        lines += [
            "database mdb",
            "maxsize 1073741824",
            f"suffix \"{self.suffix}\"",
            f"rootdn \"{self.root_dn}\"",
            f"rootpw {self._root_hash}",
            f"directory \"{self.folder / 'data'}\"",
            "dbnosync",
            "index objectClass eq",
            "index mail eq",
            extra_config,
        ]
        return "\n".join(line for line in lines if line) + "\n"

    def load(self, ldif: str | Path) -> None:
        """Add entries with slapadd (only while slapd is stopped)."""
        path = ldif if isinstance(ldif, Path) else self.folder / "load.ldif"
        if isinstance(ldif, str):
            path.write_text(ldif, encoding="utf-8")
        done = subprocess.run(
            [str(SLAPADD), "-q", "-f", str(self.config_file), "-l", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SlapdError(f"slapadd {path} failed: {done.stderr.strip()[-1500:]}")

    def start(self, timeout: float = 20.0) -> None:
        urls = [f"ldap://127.0.0.1:{self.port}/"]
        if self.ldaps_port:
            urls.append(f"ldaps://127.0.0.1:{self.ldaps_port}/")
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SLAPD), "-f", str(self.config_file), "-h", " ".join(urls), "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        ports = [p for p in (self.port, self.ldaps_port) if p]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SlapdError(f"slapd exited at start: {self._log_tail()}")
            if all(self._listening(port) for port in ports):
                return
            time.sleep(0.05)
        self.kill()
        raise SlapdError(f"slapd did not listen within {timeout:.0f}s: {self._log_tail()}")

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text.strip()[-1500:] or "(no output)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if slapd is still there after 15 seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server goes away at once, mid-operation."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Slapd:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()
