"""Read-only views of the state store for ``syncd status``, ``syncd history`` and reports.

The queries are SQLAlchemy Core over :mod:`syncd.state.tables`, not the ORM: ``syncd status``
then starts without loading the ORM and the models. They take an ORM session or a plain
connection alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping, func, or_, select

from syncd.domain import KeyPairStatus, TaskStatus
from syncd.state.tables import audit_log, instances, key_pairs, tasks, users

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Row = RowMapping

_OPEN = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED)


def _state(user: Row, active: Row | None, task: Row | None) -> str:
    if task is not None and task["status"] is TaskStatus.FAILED:
        return "failed"
    if task is not None:
        return f"{task['kind'].value} pending"
    if user["deprovisioned_at"] is not None and not (user["in_scope"] and user["enabled"]):
        return "deprovisioned"
    if active is not None:
        return "active"
    if not user["enabled"]:
        return "disabled in directory"
    if not user["in_scope"]:
        return "out of scope"
    return "not provisioned"


INSTANCE_LIVE_FOR = timedelta(seconds=15)
"""A shared group's member whose heartbeat is older is not live (syncd.state.instances)."""


def _claimants(session: Session | Connection) -> dict[int, str]:
    """``host:pid`` of each member of a shared group, by its token."""
    rows = session.execute(select(instances.c.id, instances.c.host, instances.c.pid))
    return {row.id: f"{row.host}:{row.pid}" for row in rows}


def _held_by(task: Row | None, claimants: dict[int, str], now: datetime) -> str | None:
    """Who is running the task now: an instance of a shared group, or a pass's token."""
    if task is None or task["status"] is not TaskStatus.RUNNING:
        return None
    if task["lease_until"] is None or task["lease_until"] <= now or task["claimed_by"] is None:
        return None
    token = int(task["claimed_by"])
    return claimants.get(token, f"token {token}")


def instance_status(session: Session | Connection, now: datetime) -> list[dict[str, Any]]:
    """One row per member of a shared group (``state.shared``): who, since when, whether its
    heartbeat is recent (by the database server's clock, in which it is written), and how many
    tasks it holds a live claim on (at ``now``)."""
    claimed: dict[int, int] = {
        int(token): int(count)
        for token, count in session.execute(
            select(tasks.c.claimed_by, func.count())
            .where(tasks.c.status == TaskStatus.RUNNING, tasks.c.lease_until > now)
            .group_by(tasks.c.claimed_by)
        )
        if token is not None
    }
    return [
        {
            "instance": f"{row.host}:{row.pid}",
            "token": row.id,
            "started": row.started_at,
            "heartbeat": row.heartbeat_at,
            "live": row.live,
            "workers": row.workers,
            "claimed_tasks": int(claimed.get(row.id, 0)),
        }
        for row in session.execute(
            # Heartbeats are written in the database server's clock (syncd.state.instances).
            select(
                instances, (instances.c.heartbeat_at > func.now() - INSTANCE_LIVE_FOR).label("live")
            ).order_by(instances.c.id)
        )
    ]


def user_status(session: Session | Connection, email: str | None = None) -> list[dict[str, Any]]:
    """One row per user: state, current step, key pair id, certificate expiry, last error, and
    the instance running its task now (``held_by``)."""
    users_query = select(users).order_by(users.c.email)
    if email is not None:
        users_query = users_query.where(users.c.email == email.strip().lower())
    found = list(session.execute(users_query).mappings())
    ids = [u["id"] for u in found]
    active: dict[int, Row] = {}
    for key_pair in session.execute(
        select(key_pairs)
        .where(key_pairs.c.user_id.in_(ids), key_pairs.c.status == KeyPairStatus.ACTIVE)
        .order_by(key_pairs.c.generation)
    ).mappings():
        active[key_pair["user_id"]] = key_pair
    open_tasks = {
        t["user_id"]: t
        for t in session.execute(
            select(tasks).where(tasks.c.user_id.in_(ids), tasks.c.status.in_(_OPEN))
        ).mappings()
    }
    claimants = (
        _claimants(session)
        if any(t["status"] is TaskStatus.RUNNING for t in open_tasks.values())
        else {}
    )
    now = datetime.now(UTC)
    rows = []
    for user in found:
        kp, task = active.get(user["id"]), open_tasks.get(user["id"])
        rows.append(
            {
                "email": user["email"],
                "state": _state(user, kp, task),
                "in_scope": user["in_scope"],
                "enabled": user["enabled"],
                "generation": kp["generation"] if kp else None,
                "key_pair_id": kp["gmail_key_pair_id"] if kp else None,
                "certificate_expires": kp["not_after"] if kp else None,
                "private_key_format": kp["private_key_format"] if kp else None,
                "kms_backend": kp["kms_backend"] if kp else None,
                "task": task["kind"].value if task else None,
                "step": task["next_step"] if task else None,
                "attempts": task["attempts"] if task else 0,
                "next_attempt": task["next_attempt_at"] if task else None,
                "last_error": task["last_error"] if task else None,
                "permanent": bool(task and task["permanent"]),
                "held_by": _held_by(task, claimants, now),
                "last_seen": user["last_seen"],
            }
        )
    return rows


_IN_GMAIL = (KeyPairStatus.OBLITERATED, KeyPairStatus.ABANDONED)


def key_pairs_in_other_format(
    session: Session | Connection, configured: str, email: str | None = None
) -> list[dict[str, Any]]:
    """Key pairs still in Gmail whose kaclsData holds the private key in another format than
    ``configured`` (``kacls.private_key_format``), by user and generation.

    Gmail keeps every enabled or disabled key pair's kaclsData and sends it to the KACLS to
    decrypt old mail, so superseded and disabled generations count as well as active ones.
    ``email``: only that user's key pairs.
    """
    kp = key_pairs.c
    query = (
        select(
            users.c.email,
            kp.generation,
            kp.status,
            kp.gmail_key_pair_id,
            kp.private_key_format,
            kp.not_after,
        )
        .join_from(key_pairs, users, users.c.id == kp.user_id)
        .where(
            kp.gmail_key_pair_id.is_not(None),
            kp.status.not_in(_IN_GMAIL),
            kp.private_key_format.is_not(None),
            kp.private_key_format != configured,
        )
        .order_by(users.c.email, kp.generation)
    )
    if email is not None:
        query = query.where(users.c.email == email.strip().lower())
    return [
        {
            "email": row["email"],
            "generation": row["generation"],
            "status": row["status"].value,
            "key_pair_id": row["gmail_key_pair_id"],
            "private_key_format": row["private_key_format"],
            "certificate_expires": row["not_after"],
        }
        for row in session.execute(query).mappings()
    ]


def history(session: Session | Connection, email: str) -> list[dict[str, Any]]:
    """The audit trail of one user, oldest first: the events of the address, and those of the
    user now holding it under an earlier address (a rename keeps one history)."""
    address = email.strip().lower()
    holder = select(users.c.id).where(users.c.email == address).scalar_subquery()
    events = session.execute(
        select(audit_log.c.at, audit_log.c.action, audit_log.c.run_id, audit_log.c.detail)
        .where(or_(audit_log.c.email == address, audit_log.c.user_id == holder))
        .order_by(audit_log.c.at, audit_log.c.id)
    ).mappings()
    return [
        {"at": e["at"], "action": e["action"], "run_id": e["run_id"], "detail": e["detail"]}
        for e in events
    ]
