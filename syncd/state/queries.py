"""Read-only views of the state store for ``syncd status``, ``syncd history`` and reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.domain import KeyPairStatus, TaskStatus
from syncd.state.models import AuditEvent, KeyPair, Task, User

_OPEN = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED)


def _state(user: User, active: KeyPair | None, task: Task | None) -> str:
    if task is not None and task.status is TaskStatus.FAILED:
        return "failed"
    if task is not None:
        return f"{task.kind.value} pending"
    if user.deprovisioned_at is not None and not (user.in_scope and user.enabled):
        return "deprovisioned"
    if active is not None:
        return "active"
    if not user.enabled:
        return "disabled in directory"
    if not user.in_scope:
        return "out of scope"
    return "not provisioned"


def user_status(session: Session, email: str | None = None) -> list[dict[str, Any]]:
    """One row per user: state, current step, key pair id, certificate expiry, last error."""
    users_query = select(User).order_by(User.email)
    if email is not None:
        users_query = users_query.where(User.email == email.strip().lower())
    users = list(session.scalars(users_query))
    ids = [u.id for u in users]
    active: dict[int, KeyPair] = {}
    for key_pair in session.scalars(
        select(KeyPair)
        .where(KeyPair.user_id.in_(ids), KeyPair.status == KeyPairStatus.ACTIVE)
        .order_by(KeyPair.generation)
    ):
        active[key_pair.user_id] = key_pair
    open_tasks = {
        t.user_id: t
        for t in session.scalars(select(Task).where(Task.user_id.in_(ids), Task.status.in_(_OPEN)))
    }
    rows = []
    for user in users:
        kp, task = active.get(user.id), open_tasks.get(user.id)
        rows.append(
            {
                "email": user.email,
                "state": _state(user, kp, task),
                "in_scope": user.in_scope,
                "enabled": user.enabled,
                "generation": kp.generation if kp else None,
                "key_pair_id": kp.gmail_key_pair_id if kp else None,
                "certificate_expires": kp.not_after if kp else None,
                "private_key_format": kp.private_key_format if kp else None,
                "kms_backend": kp.kms_backend if kp else None,
                "task": task.kind.value if task else None,
                "step": task.next_step if task else None,
                "attempts": task.attempts if task else 0,
                "next_attempt": task.next_attempt_at if task else None,
                "last_error": task.last_error if task else None,
                "permanent": bool(task and task.permanent),
                "last_seen": user.last_seen,
            }
        )
    return rows


_IN_GMAIL = (KeyPairStatus.OBLITERATED, KeyPairStatus.ABANDONED)


def key_pairs_in_other_format(
    session: Session, configured: str, email: str | None = None
) -> list[dict[str, Any]]:
    """Key pairs still in Gmail whose kaclsData holds the private key in another format than
    ``configured`` (``kacls.private_key_format``), by user and generation.

    Gmail keeps every enabled or disabled key pair's kaclsData and sends it to the KACLS to
    decrypt old mail, so superseded and disabled generations count as well as active ones.
    ``email``: only that user's key pairs.
    """
    query = (
        select(User.email, KeyPair)
        .join(User, User.id == KeyPair.user_id)
        .where(
            KeyPair.gmail_key_pair_id.is_not(None),
            KeyPair.status.not_in(_IN_GMAIL),
            KeyPair.private_key_format.is_not(None),
            KeyPair.private_key_format != configured,
        )
        .order_by(User.email, KeyPair.generation)
    )
    if email is not None:
        query = query.where(User.email == email.strip().lower())
    rows = session.execute(query)
    return [
        {
            "email": email,
            "generation": kp.generation,
            "status": kp.status.value,
            "key_pair_id": kp.gmail_key_pair_id,
            "private_key_format": kp.private_key_format,
            "certificate_expires": kp.not_after,
        }
        for email, kp in rows
    ]


def history(session: Session, email: str) -> list[dict[str, Any]]:
    """The audit trail of one user, oldest first."""
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.email == email.strip().lower())
        .order_by(AuditEvent.at, AuditEvent.id)
    )
    return [
        {"at": e.at, "action": e.action, "run_id": e.run_id, "detail": e.detail} for e in events
    ]
