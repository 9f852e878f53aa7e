"""The sandbox's HTTP/1.1 framing, read by waitress: keep-alive, bodies by Content-Length or
chunked, and clear refusals of malformed requests."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any

from tests.support.sandbox import RunningSandbox


def _exchange(sandbox: RunningSandbox, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", sandbox.server.port), timeout=5) as conn:
        conn.sendall(raw)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def _statuses(received: bytes) -> list[int]:
    """The status of each response, read one after the other by Content-Length."""
    statuses = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        statuses.append(int(lines[0].split()[1]))
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        received = rest[int(fields.get("content-length", "0")) :]
    return statuses


def test_two_requests_on_one_connection_then_close(sandbox: RunningSandbox) -> None:
    request = b"GET /sandbox/v1/clock HTTP/1.1\r\nHost: x\r\n\r\n"
    closing = b"GET /sandbox/v1/clock HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    received = _exchange(sandbox, request + closing)
    assert _statuses(received) == [200, 200]
    assert json.loads(received.rsplit(b"\r\n\r\n", 1)[1])["now"].endswith("Z")


def test_body_read_by_content_length(sandbox: RunningSandbox) -> None:
    body = json.dumps({"advance_seconds": 60}).encode()
    length = str(len(body)).encode()
    request = (
        b"POST /sandbox/v1/clock HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + length + b"\r\n\r\n"
    )
    received = _exchange(sandbox, request + body)
    assert _statuses(received) == [200]


def test_bad_request_line_is_refused(sandbox: RunningSandbox) -> None:
    received = _exchange(sandbox, b"HELLO\r\n\r\n")
    assert _statuses(received) == [400]


def test_chunked_body_is_read(sandbox: RunningSandbox) -> None:
    before = sandbox.admin("GET", "clock")["now"]
    body = json.dumps({"advance_seconds": 86400 * 2}).encode()
    request = (
        b"POST /sandbox/v1/clock HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    )
    received = _exchange(sandbox, request)
    assert _statuses(received) == [200]
    assert json.loads(received.rsplit(b"\r\n\r\n", 1)[1])["now"][:10] > before[:10]


def test_header_line_without_colon_is_refused(sandbox: RunningSandbox) -> None:
    received = _exchange(sandbox, b"GET /sandbox/v1/clock HTTP/1.1\r\nno colon here\r\n\r\n")
    assert _statuses(received) == [400]


def test_bad_content_length_is_refused(sandbox: RunningSandbox) -> None:
    request = b"POST /sandbox/v1/clock HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"
    received = _exchange(sandbox, request)
    assert _statuses(received) == [400]


def test_as_many_requests_in_flight_as_pipeline_workers(sandbox: RunningSandbox) -> None:
    """64 requests held inside the application at once (the pipeline's largest worker count):
    each waits at a barrier that opens only when all 64 are there."""
    workers = 64
    assert sandbox.server.threads >= workers
    barrier = threading.Barrier(workers, timeout=30)
    app = sandbox.server.app
    dispatch = app.dispatch

    def held(*args: Any) -> Any:
        barrier.wait()
        return dispatch(*args)

    app.dispatch = held  # type: ignore[method-assign]
    statuses: list[int] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", sandbox.server.port, timeout=60)
        try:
            conn.request("GET", "/sandbox/v1/clock")
            statuses.append(conn.getresponse().status)
        finally:
            conn.close()

    clients = [threading.Thread(target=one) for _ in range(workers)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert statuses == [200] * workers
