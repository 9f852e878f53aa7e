"""The audit log: one append-only row for every action syncd takes on a user.

The database refuses UPDATE and DELETE on ``audit_log`` (triggers from migration 0001); this
module refuses details that could carry secrets or that JSON cannot hold.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from syncd.state.models import AuditEvent, User

# Compared against keys lower-cased with everything but letters and digits removed, so
# "privateKey", "private-key" and "issuer_private_key" all match.
SECRET_KEY_MARKERS = ("privatekey", "password", "passphrase", "masterkey", "wrappingkey")
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]")


def _keys(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            yield str(key), where
            yield from _keys(item, where)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _keys(item, f"{path}[{index}]")


@functools.lru_cache(maxsize=1024)
def _secret_like(key: str) -> bool:
    """True when a detail key is named like a secret (the pipeline's few key names recur for
    every step of every user: each is judged once)."""
    folded = _NOT_ALPHANUMERIC.sub("", key.lower())
    return any(marker in folded for marker in SECRET_KEY_MARKERS)


def _check_detail(action: str, detail: dict[str, Any]) -> None:
    for key, where in _keys(detail, "detail"):
        if _secret_like(key):
            raise ValueError(
                f"audit event {action!r}: {where} looks like a secret; "
                "secrets never go into the audit log"
            )
    try:
        json.dumps(detail, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"audit event {action!r}: detail is not JSON-serialisable: {error}"
        ) from None


def record(
    session: Session,
    action: str,
    *,
    user: User | None = None,
    user_id: int | None = None,
    email: str | None = None,
    run_id: int | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add an audit event to ``session`` (committed with the caller's transaction).

    Name the user by ``user`` or, where only its id is at hand, ``user_id`` and ``email``.
    ``email`` defaults to the user's; ``detail`` must be JSON-serialisable and free of keys
    named like secrets (ValueError otherwise).
    """
    _check_detail(action, detail)
    if user is not None and user.id is None:
        session.add(user)
        session.flush()
    event = AuditEvent(
        action=action,
        user_id=user.id if user is not None else user_id,
        email=email if email is not None else (user.email if user is not None else None),
        run_id=run_id,
        detail=detail,
    )
    session.add(event)
    return event


def record_fast(
    connection: Connection,
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    user_id: int | None,
    email: str | None,
    run_id: int | None,
    now: datetime,
) -> None:
    """:func:`record` for one user's ``(action, detail)`` events, in one INSERT statement on
    ``connection``: the pipeline's per-step path."""
    for action, detail in events:
        _check_detail(action, detail)
    who = {"at": now, "user_id": user_id, "email": email, "run_id": run_id}
    connection.execute(
        _INSERT, [{**who, "action": action, "detail": detail} for action, detail in events]
    )


_INSERT = insert(AuditEvent)  # built once: record_fast runs for every step of every user
