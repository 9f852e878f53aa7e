"""The sandbox's HTTP server: :class:`SandboxServer` (in a background thread, for tests) and
:func:`serve` (blocking, for ``syncd sandbox serve``).

HTTP/1.1 is waitress's (a maintained WSGI server: keep-alive, bodies by Content-Length or
chunked, refusals of malformed requests); the application is wsgi.py's adapter over
:class:`SandboxApp`. Requests run on a fixed pool of ``threads`` worker threads, sized for the
pipeline's workers: each worker keeps its connections open and waits on each answer, and an
injected latency holds a thread for its duration, so fewer threads than concurrent workers
would queue requests and distort what a test or bench measures.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from pathlib import Path
from types import TracebackType

from waitress.server import BaseWSGIServer, create_server

from syncd.errors import ConfigError
from syncd.sandbox.app import SandboxApp
from syncd.sandbox.clock import Clock
from syncd.sandbox.context import Services
from syncd.sandbox.faults import FaultInjector, FaultSettings, parse_settings
from syncd.sandbox.store import Store
from syncd.sandbox.wsgi import wsgi_app

log = logging.getLogger(__name__)

IDLE_CONNECTION_TIMEOUT = 30
"""Seconds before an idle keep-alive connection is closed."""
DEFAULT_THREADS = 64
"""Worker threads: the pipeline's largest worker count (issue 16 goes to 64 workers)."""
CONNECTIONS_PER_THREAD = 4
"""Open connections allowed per worker thread (each pipeline worker holds a Gmail, a
Directory and a token connection)."""
SERVER_IDENT = "syncd-sandbox"


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
    """The sandbox on ``host:port`` (0 picks a free port) serving ``data_dir`` with
    ``threads`` worker threads."""

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultSettings | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.threads = threads
        self._port = port
        store = Store(self.data_dir)
        store.directory()
        store.trusted_roots()
        store.service_accounts()
        self.app = SandboxApp(
            Services(store, Clock(store)), FaultInjector(_initial_faults(store, faults))
        )
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> BaseWSGIServer:
        """Listen on the one address given (no name resolution to several sockets)."""
        if self._server is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self._port))
            except OSError as exc:
                sock.close()
                raise ConfigError(
                    f"{self.host}:{self._port}", f"cannot listen: {exc.strerror}"
                ) from None
            server = create_server(
                wsgi_app(self.app),
                sockets=[sock],
                threads=self.threads,
                connection_limit=self.threads * CONNECTIONS_PER_THREAD,
                channel_timeout=IDLE_CONNECTION_TIMEOUT,
                ident=SERVER_IDENT,
                asyncore_use_poll=True,
            )
            assert isinstance(server, BaseWSGIServer)  # one socket: one server
            self._server = server
            self._port = int(sock.getsockname()[1])
        return self._server

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
        server = self._bind()
        if self._thread is None:
            self._thread = threading.Thread(
                target=server.run, name=f"sandbox:{self._port}", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Listen and serve in the calling thread until interrupted."""
        server = self._bind()
        try:
            server.run()  # returns on KeyboardInterrupt, its workers stopped
        finally:
            _close_all(server)
            server.task_dispatcher.shutdown()
            self._server = None

    def stop(self) -> None:
        """Close the listening socket and every open connection, stop the worker threads.
        Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        if thread is not None and thread.is_alive():
            # The loop thread closes its own sockets; an empty socket map ends its loop.
            try:
                server.trigger.pull_trigger(lambda: _close_all(server))
            except OSError:
                # The wake-up pipe is already closed, so nothing can wake the loop: close
                # from here; the loop sees an empty map at its next poll (1 s) and ends.
                _close_all(server)
            thread.join(timeout=10)
        else:
            _close_all(server)
        server.task_dispatcher.shutdown()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _close_all(server: BaseWSGIServer) -> None:
    """Close every socket in the server's map: connections, the listener, the wake-up pipe."""
    for dispatcher in list(server._map.values()):
        dispatcher.close()


def serve(host: str, port: int, data_dir: Path, threads: int = DEFAULT_THREADS) -> None:
    """Run the sandbox in the foreground until Ctrl-C (``syncd sandbox serve``)."""
    server = SandboxServer(data_dir, host, port, threads=threads)
    server._bind()
    log.info("sandbox listening on %s (data %s)", server.url, data_dir)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    log.info("sandbox stopped")
