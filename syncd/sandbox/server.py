"""The sandbox's HTTP server: :class:`SandboxServer` (in a background thread, for tests) and
:func:`serve` (blocking, for ``syncd sandbox serve``).

HTTP/1.1 with keep-alive, one thread per connection (``ThreadingHTTPServer``).
"""

from __future__ import annotations

import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from syncd.errors import ConfigError
from syncd.sandbox.app import Answer, SandboxApp
from syncd.sandbox.clock import Clock
from syncd.sandbox.context import Services
from syncd.sandbox.faults import FaultInjector, FaultSettings, parse_settings
from syncd.sandbox.store import Store

log = logging.getLogger(__name__)

IDLE_CONNECTION_TIMEOUT = 30.0
MAX_HEADER_LINE = 65536
MAX_HEADER_FIELDS = 100


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "syncd-sandbox"
    sys_version = ""
    timeout = IDLE_CONNECTION_TIMEOUT
    # Buffered: the status line, headers and body leave in one write (http.server flushes
    # after each request), so the client is woken once per answer, not twice.
    wbufsize = 64 * 1024
    server: _HTTPServer
    raw_requestline: bytes

    def setup(self) -> None:
        super().setup()
        # Without NODELAY, Nagle's algorithm and the client's delayed ACK can stall a
        # keep-alive answer by about 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fields: dict[str, str] = {}
        """The request's header fields, names lower-cased (http.server's ``headers`` is not set)."""

    def parse_request(self) -> bool:
        """The request line and header fields, read without the email parser that
        http.server uses, which costs more than the sandbox's own work on a request.
        HTTP/1.x only; a body must come with Content-Length (Google's clients send it)."""
        # What send_error reads if the request line cannot be parsed (not HTTP/0.9, so that
        # the refusal has a status line and headers).
        self.command = ""
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        fields: dict[str, str] = {}
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if len(line) > MAX_HEADER_LINE or not colon or len(fields) >= MAX_HEADER_FIELDS:
                self.send_error(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE if colon else HTTPStatus.BAD_REQUEST,
                    "Bad header fields",
                )
                return False
            fields[name.strip().lower()] = value.strip()
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self.send_error(HTTPStatus.LENGTH_REQUIRED, "Send the body with Content-Length")
            return False
        connection = fields.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        self.fields = fields
        return True

    def _serve(self) -> None:
        try:
            length = int(self.fields.get("content-length") or 0)
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
            return
        body = self.rfile.read(length) if length > 0 else b""
        answer = self.server.app.dispatch(
            self.command, self.path, self.fields, body, self.client_address[0]
        )
        if answer.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        payload = answer.encoded()
        self.send_response(answer.status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: object) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: SandboxApp


def _initial_faults(store: Store, given: FaultSettings | None) -> FaultSettings:
    if given is not None:
        return given
    data = store.fault_file()
    if data is None:
        return FaultSettings()
    try:
        return parse_settings(data)
    except ValueError as exc:
        raise ConfigError(str(store.data_dir / "faults.yaml"), str(exc)) from None


class SandboxServer:
    """The sandbox on ``host:port`` (0 picks a free port) serving ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultSettings | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self._port = port
        store = Store(self.data_dir)
        store.directory()
        store.trusted_roots()
        store.service_accounts()
        self.app = SandboxApp(
            Services(store, Clock(store)), FaultInjector(_initial_faults(store, faults))
        )
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            server_class = type("_Bound", (_HTTPServer,), {"address_family": family})
            try:
                httpd: _HTTPServer = server_class((self.host, self._port), _Handler)
            except OSError as exc:
                raise ConfigError(
                    f"{self.host}:{self._port}", f"cannot listen: {exc.strerror}"
                ) from None
            httpd.app = self.app
            self._httpd = httpd
            self._port = httpd.server_address[1]
        return self._httpd

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The API endpoint, e.g. ``http://127.0.0.1:8765/`` (``google.endpoint``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}/"

    @property
    def token_uri(self) -> str:
        """The OAuth2 token endpoint to put in a service account key file."""
        return self.url + "token"

    def start(self) -> SandboxServer:
        """Listen and serve from a background thread; returns self."""
        httpd = self._bind()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Listen and serve in the calling thread until interrupted."""
        httpd = self._bind()
        try:
            httpd.serve_forever()
        finally:
            httpd.server_close()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(host: str, port: int, data_dir: Path) -> None:
    """Run the sandbox in the foreground until Ctrl-C (``syncd sandbox serve``)."""
    server = SandboxServer(data_dir, host, port)
    server._bind()
    log.info("sandbox listening on %s (data %s)", server.url, data_dir)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("sandbox stopped")
