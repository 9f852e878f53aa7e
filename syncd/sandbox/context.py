"""What a request handler receives (Call, Services) and returns (Reply)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.sandbox.clock import Clock
from syncd.sandbox.store import Store
from syncd.sandbox.tokens import TokenGrant


@dataclass(frozen=True)
class Services:
    """The sandbox's shared parts, one set per server."""

    store: Store
    clock: Clock


@dataclass(frozen=True)
class Call:
    """One authorized API request: decoded path parameters, query, JSON body, token grant."""

    params: dict[str, str]
    query: dict[str, str]
    body: Any
    grant: TokenGrant


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    """JSON-serialisable; None sends no body (204)."""


NO_CONTENT = Reply(204)
