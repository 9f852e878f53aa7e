"""The sandbox as a WSGI application: one WSGI call, one :meth:`SandboxApp.dispatch`.

The HTTP/1.1 framing (request line, header fields, keep-alive, bodies) is the server's
(waitress, see server.py); this module only translates a WSGI environ into the dispatcher's
arguments and its :class:`Answer` back into a status line, header fields and a body.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from waitress.channel import ClientDisconnected

from syncd.sandbox.app import Answer, SandboxApp
from syncd.sandbox.errors import ApiError

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

VERBS = frozenset({"GET", "POST", "PATCH", "DELETE", "PUT"})
"""The methods the sandbox answers; any other gets 501, as before the move to WSGI."""


def status_line(status: int) -> str:
    """``"404 Not Found"``; a code without a standard phrase keeps the code alone."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def request_target(environ: Mapping[str, Any]) -> str:
    """The raw request target (path and query, still percent-encoded, as the routes match
    it): waitress's ``REQUEST_URI``, else rebuilt from ``PATH_INFO`` per PEP 3333."""
    raw = environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw:
        return raw
    path = urllib.parse.quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def header_fields(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's header fields, names lower-cased (``HTTP_X_Y`` -> ``x-y``)."""
    fields = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            fields[key.replace("_", "-").lower()] = str(environ[key])
    return fields


def read_body(environ: Mapping[str, Any]) -> bytes:
    """The request body, ``CONTENT_LENGTH`` bytes (the server has checked the number)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length <= 0:
        return b""
    body: bytes = environ["wsgi.input"].read(length)
    return body


def response_headers(answer: Answer, payload: bytes) -> list[tuple[str, str]]:
    headers = [("Content-Length", str(len(payload)))]
    if payload:
        headers.insert(0, ("Content-Type", "application/json; charset=UTF-8"))
    headers += list(answer.headers.items())
    return headers


def wsgi_app(app: SandboxApp) -> WsgiApp:
    """The WSGI callable serving ``app``.

    A dropped connection (fault ``drop`` or ``drop_after``) raises waitress's
    ``ClientDisconnected`` before anything is written: waitress then closes the connection
    without an answer, which is what the client must see.
    """

    def application(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        verb = str(environ.get("REQUEST_METHOD", ""))
        if verb not in VERBS:
            error = ApiError(501, f"Method {verb} is not implemented.")
            answer = Answer(error.code, error.body(), error.headers)
        else:
            answer = app.dispatch(
                verb,
                request_target(environ),
                header_fields(environ),
                read_body(environ),
                str(environ.get("REMOTE_ADDR", "")),
            )
        if answer.drop:
            raise ClientDisconnected("the sandbox drops this connection (injected fault)")
        payload = answer.encoded()
        start_response(status_line(answer.status), response_headers(answer, payload))
        return [payload]

    return application
