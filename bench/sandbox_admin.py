"""The sandbox's admin endpoints (``/sandbox/v1/...``: faults, stats) over HTTP, for benchmarks."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def admin(port: int, verb: str, name: str, body: dict[str, Any] | None = None) -> Any:
    """``verb`` on ``/sandbox/v1/name`` of the sandbox on 127.0.0.1:``port``; the JSON answer."""
    data = json.dumps(body).encode() if body is not None else (b"" if verb == "POST" else None)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/sandbox/v1/{name}", data=data, method=verb
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())
