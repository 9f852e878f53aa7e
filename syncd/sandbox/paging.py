"""Opaque page tokens and page slicing, shared by the Gmail and Directory handlers.

A token encodes the offset of the next item and a digest of the listing's other parameters,
so a token replayed with a different query is refused like Google refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import TypeVar

from syncd.sandbox.errors import invalid

T = TypeVar("T")


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def make_token(offset: int, scope: str) -> str:
    """A page token for the item at ``offset`` of the listing identified by ``scope``."""
    raw = json.dumps({"o": offset, "s": _digest(scope)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_token(token: str | None, scope: str) -> int:
    """The offset a page token points at (0 without a token); 400 for a foreign token."""
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(data["o"])
        same_scope = data["s"] == _digest(scope)
    except (ValueError, KeyError, TypeError):
        raise invalid("Invalid pageToken.") from None
    if offset < 0 or not same_scope:
        raise invalid("Invalid pageToken.")
    return offset


def page_size(raw: str | None, *, default: int, maximum: int, name: str) -> int:
    """A page size parameter, checked like Google checks it."""
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError:
        raise invalid(f"Invalid value for {name}: {raw!r} is not an integer.") from None
    if size < 1 or size > maximum:
        raise invalid(f"Invalid value for {name}: {size} (must be between 1 and {maximum}).")
    return size


def paginate(
    items: Sequence[T], token: str | None, size: int, scope: str
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the token of the next page (None on the last page)."""
    start = read_token(token, scope)
    end = start + size
    next_token = make_token(end, scope) if end < len(items) else None
    return list(items[start:end]), next_token
