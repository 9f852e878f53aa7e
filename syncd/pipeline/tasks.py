"""Persistent tasks: claims and checkpoints, the state store side of the runner.

Claims a task (by id for a pass alone, or the next free one in a shared group), and records
each step's outcome together with the task's checkpoint, proving the claim (and for a run-lock
claim, the token) in the same statement. Turning the plan's actions into tasks is
:mod:`syncd.pipeline.enqueue`; what the plan reads lives in :mod:`syncd.pipeline.plan_state`.
Every function takes the caller's connection or Session and leaves committing to it, so one
transaction covers one change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Update, and_, bindparam, or_, select, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from syncd.domain import KeyPairStatus, TaskKind, TaskStatus
from syncd.errors import ClaimLostError
from syncd.pipeline.claims import Claim
from syncd.pipeline.steps import KeyPairView, Outcome, Work, next_step, revocation
from syncd.state import audit, fencing
from syncd.state.models import KeyPair, Task, User

log = logging.getLogger("syncd.pipeline")

OPEN = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED)
HOLDING = (KeyPairStatus.PENDING, KeyPairStatus.ACTIVE, KeyPairStatus.SUPERSEDED)


# The per-step path runs these for every step of every user. They are built once, with bind
# parameters: building and hashing a statement costs several times more than running it.
# Each renews the task's claim and, for a run-lock claim (Claim.fenced), carries the fencing
# proof (the run-lock token is still ours) in its WHERE clause: a changed token, or a task
# taken over by another instance, shows as no row changed.
_KEY_PAIR_VIEW = (
    KeyPair.id,
    KeyPair.generation,
    KeyPair.status,
    KeyPair.kms_label,
    KeyPair.kms_private_key_id,
    KeyPair.kms_public_key_id,
    KeyPair.certificate_pem,
    KeyPair.fingerprint_sha256,
    KeyPair.gmail_key_pair_id,
    KeyPair.private_key_format,
    KeyPair.kms_backend,
    KeyPair.superseded_at,
    KeyPair.disabled_at,
)  # in KeyPairView's field order
_TASK_VIEW = (
    Task.kind,
    Task.user_id,
    Task.key_pair_id,
    Task.next_step,
    User.email,
    User.deprovisioned_at,
    User.previous_email,
    User.aliases,
)
_WORK = (
    select(*_TASK_VIEW, *_KEY_PAIR_VIEW)
    .join(User, User.id == Task.user_id)
    .outerjoin(KeyPair, KeyPair.user_id == Task.user_id)
    .where(Task.id == bindparam("task_id"))
    .order_by(KeyPair.generation)
)
"""The task, its user and each of the user's key pairs (a row each; one row with none)."""


@dataclass(frozen=True)
class _Statements:
    """The per-step statements, with or without the run-lock fencing proof."""

    start: Update
    first_start: Update
    """``start`` for a task nobody has claimed yet (changes no row otherwise)."""
    advance: Update
    finish: Update
    renew: Update
    fail: Update


def _statements(fenced: bool) -> _Statements:
    proof = (fencing.still_ours(),) if fenced else ()
    ours = (
        Task.id == bindparam("task_id"),
        Task.status == TaskStatus.RUNNING,
        Task.claimed_by == bindparam("token"),
        *proof,
    )
    claimed = {
        "status": TaskStatus.RUNNING,
        "run_id": bindparam("run"),
        "claimed_by": bindparam("token"),
        "lease_until": bindparam("lease_until"),
    }
    return _Statements(
        start=update(Task).where(Task.id == bindparam("task_id"), *proof).values(**claimed),
        first_start=update(Task)
        .where(Task.id == bindparam("task_id"), Task.claimed_by.is_(None), *proof)
        .values(**claimed),
        advance=update(Task)
        .where(*ours, Task.next_step == bindparam("step"))
        .values(
            next_step=bindparam("following"),
            updated_at=bindparam("now"),
            lease_until=bindparam("lease_until"),
        ),
        finish=update(Task)
        .where(*ours, Task.next_step == bindparam("step"))
        .values(
            next_step=None,
            updated_at=bindparam("now"),
            status=TaskStatus.DONE,
            finished_at=bindparam("now"),
            last_error=None,
            lease_until=None,
        ),
        renew=update(Task).where(*ours).values(lease_until=bindparam("lease_until")),
        fail=update(Task)
        .where(*ours)
        .values(
            status=TaskStatus.FAILED,
            attempts=bindparam("attempts"),
            last_error=bindparam("error"),
            next_attempt_at=bindparam("retry_at"),
            permanent=bindparam("permanent"),
            updated_at=bindparam("now"),
            lease_until=None,
        ),
    )


_FENCED = _statements(fenced=True)
_UNFENCED = _statements(fenced=False)


def _for(claim: Claim) -> _Statements:
    return _FENCED if claim.fenced else _UNFENCED


_FREE = or_(
    Task.status == TaskStatus.PENDING,
    and_(
        Task.status == TaskStatus.RUNNING,
        or_(Task.lease_until.is_(None), Task.lease_until < bindparam("now")),
    ),
)
"""A task free to claim: pending, or running with no live lease (its claimant stopped or
was killed)."""
_ANY_FREE = select(Task.id).where(_FREE).limit(1)
_CLAIMABLE = (
    select(Task.id).where(_FREE).order_by(Task.id).limit(1).with_for_update(skip_locked=True)
)
"""The next free task; rows another transaction is claiming are skipped, not waited for."""
_RELEASE = (
    update(Task)
    .where(
        Task.id == bindparam("task_id"),
        Task.status == TaskStatus.RUNNING,
        Task.claimed_by == bindparam("token"),
    )
    .values(lease_until=None)
)
_UPDATE_KEY_PAIR = update(KeyPair).where(KeyPair.id == bindparam("key_pair"))
"""SET holds the columns given at execution."""
_USER_DEPROVISIONED = (
    update(User).where(User.id == bindparam("user")).values(deprovisioned_at=bindparam("at"))
)


def start(
    connection: Connection, task_id: int, run_id: int | None, claim: Claim, now: datetime
) -> tuple[Work, str | None]:
    """Claim the task and mark it running; return what its steps work on and the next step.
    The work's ``first_claim`` says whether any claim came before this one.

    Raises LockLostError if the run-lock token is no longer ``claim.token``.
    """
    values = {
        "task_id": task_id,
        "run": run_id,
        "token": claim.token,
        "lease_until": claim.until(now),
    }
    statements = _for(claim)
    first_claim = connection.execute(statements.first_start, values).rowcount == 1
    if not first_claim and connection.execute(statements.start, values).rowcount != 1:
        if claim.fenced:
            fencing.check(connection, claim.token)
        raise NoResultFound(f"no task {task_id}")
    work, step = load_work(connection, task_id)
    return (replace(work, first_claim=True) if first_claim else work), step


def claim_next(
    connection: Connection, run_id: int | None, claim: Claim, now: datetime
) -> tuple[Work, str | None] | None:
    """Claim the next task free to claim (see _CLAIMABLE) for ``claim``'s instance and mark
    it running; None when there is none. On PostgreSQL, instances claiming at once each get
    a different task (FOR UPDATE SKIP LOCKED)."""
    task_id = connection.execute(_CLAIMABLE, {"now": now}).scalar()
    if task_id is None:
        return None
    return start(connection, task_id, run_id, claim, now)


def claimable(connection: Connection, now: datetime) -> bool:
    """Whether any task is free to claim (a cheap look, no lock taken)."""
    return connection.execute(_ANY_FREE, {"now": now}).first() is not None


def _moved(connection: Connection, task_id: int, claim: Claim, what: str) -> Exception:
    """A claimed statement changed nothing: LockLostError if the run-lock token moved,
    ClaimLostError if another instance took the task over, else ``what``."""
    if claim.fenced:
        fencing.check(connection, claim.token)
        return RuntimeError(what)
    holder = connection.execute(select(Task.claimed_by).where(Task.id == task_id)).scalar()
    if holder != claim.token:
        return ClaimLostError(
            f"task {task_id} was taken over by another instance (token {holder}) after this "
            "instance's claim ended: this instance records nothing more of it"
        )
    # Same token: another worker of this instance claimed the task once this one's lease
    # ended (a step that ran past pipeline.claim_timeout), and has moved it on since.
    return ClaimLostError(
        f"{what}: claimed again by another worker of this instance after this worker's "
        "claim ended (pipeline.claim_timeout); this worker records nothing more of it"
    )


def renew(connection: Connection, task_id: int, claim: Claim, now: datetime) -> None:
    """Extend the task's claim (before a step is attempted again); proves the token."""
    values = {"task_id": task_id, "token": claim.token, "lease_until": claim.until(now)}
    if connection.execute(_for(claim).renew, values).rowcount != 1:
        raise _moved(
            connection, task_id, claim, f"task {task_id} is no longer claimed by this pass"
        )


def release(connection: Connection, task_id: int, token: int) -> None:
    """End this pass's claim on a task it leaves at its checkpoint (nothing is in flight)."""
    connection.execute(_RELEASE, {"task_id": task_id, "token": token})


def load_work(connection: Connection, task_id: int) -> tuple[Work, str | None]:
    """The task as its steps see it, and its checkpoint (the next step)."""
    rows = connection.execute(_WORK, {"task_id": task_id}).all()
    if not rows:
        raise NoResultFound(f"no task {task_id}")
    task = rows[0]
    views = [
        KeyPairView(*tuple(row)[len(_TASK_VIEW) :])
        for row in rows
        if row.id is not None  # the key pair's id: the task's columns hold no other "id"
    ]
    work = Work(
        task_id=task_id,
        kind=task.kind,
        user_id=task.user_id,
        email=task.email,
        target=next((v for v in views if v.id == task.key_pair_id), None),
        others=tuple(v for v in views if v.id != task.key_pair_id),
        user_deprovisioned=task.deprovisioned_at is not None,
        previous_email=task.previous_email,
        aliases=tuple(task.aliases or ()),
    )
    return work, task.next_step


def record_step(
    connection: Connection,
    work: Work,
    step: str,
    outcome: Outcome,
    now: datetime,
    run_id: int | None,
    claim: Claim,
) -> str | None:
    """Write a step's outcome and advance the checkpoint; returns the next step (None: done).

    Plain Core statements on a connection: this runs for every step of every user, and an
    ORM session costs more than the statements themselves. Raises LockLostError (nothing
    written) if the run-lock token is no longer ``claim.token``.
    """
    following = next_step(work.kind, step)
    at_step = {"task_id": work.task_id, "step": step, "now": now, "token": claim.token}
    moved = connection.execute(
        _for(claim).finish if following is None else _for(claim).advance,
        at_step
        if following is None
        else {**at_step, "following": following, "lease_until": claim.until(now)},
    )
    if moved.rowcount != 1:
        raise _moved(
            connection,
            work.task_id,
            claim,
            f"task {work.task_id} moved on from {step} while it ran",
        )
    for key_pair_id, columns in outcome.key_pairs.items():
        connection.execute(
            _UPDATE_KEY_PAIR, {**columns, "updated_at": now, "key_pair": key_pair_id}
        )
    events = [] if outcome.audit is None else [(f"{work.kind}.{step}", outcome.audit)]
    for item in revocation.insert_new(connection, work.email, outcome.revocations, now):
        detail = {"serial": item.serial_hex, "issuer": item.issuer_label, "reason": item.reason}
        events.append((f"{work.kind}.certificate_revoked", detail))
    if following is None:
        if work.kind is TaskKind.DEPROVISION:
            connection.execute(_USER_DEPROVISIONED, {"user": work.user_id, "at": now})
        elif work.user_deprovisioned and work.kind is not TaskKind.RETIRE:  # back again
            connection.execute(_USER_DEPROVISIONED, {"user": work.user_id, "at": None})
        # A verification that found nothing leaves no audit entry: verified_at records it.
        if work.kind is not TaskKind.VERIFY or outcome.audit is not None:
            events.append((f"{work.kind}.done", {}))
    if events:
        audit.record_fast(
            connection,
            events,
            user_id=work.user_id,
            email=work.email,
            run_id=run_id,
            now=now,
        )
    return following


def retry_delay(attempts: int, initial: float, maximum: float) -> timedelta:
    """Delay before a failed task's next pass: doubling from ``initial`` up to ``maximum``."""
    return timedelta(seconds=min(initial * 2 ** max(attempts - 1, 0), maximum))


def fail(
    session: Session,
    task_id: int,
    error: str,
    now: datetime,
    run_id: int | None,
    initial: float,
    maximum: float,
    claim: Claim,
    *,
    permanent: bool = False,
) -> datetime | None:
    """Mark the task failed; a later pass retries it after the returned time.

    A permanent failure gets no next attempt (None): the plan holds the user until a resync.
    Raises LockLostError (nothing written) if the run-lock token is no longer ``claim.token``.
    """
    task = session.get_one(Task, task_id)
    attempts = task.attempts + 1
    retry_at = None if permanent else now + retry_delay(attempts, initial, maximum)
    values = {
        "task_id": task_id,
        "token": claim.token,
        "attempts": attempts,
        "error": error[:2000],
        "retry_at": retry_at,
        "permanent": permanent,
        "now": now,
    }
    connection = session.connection()
    if connection.execute(_for(claim).fail, values).rowcount != 1:
        raise _moved(
            connection, task_id, claim, f"task {task_id} is no longer claimed by this pass"
        )
    detail: dict[str, Any] = {"permanent": True} if permanent else {}
    audit.record(
        session,
        f"{task.kind.value}.failed",
        user=task.user,
        run_id=run_id,
        step=task.next_step,
        error=error[:500],
        attempts=attempts,
        **detail,
    )
    return retry_at
