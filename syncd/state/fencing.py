"""Fencing the run lock: a token in the state store that every checkpoint proves is still ours.

Every acquisition of the run lock increments ``run_lock.token`` and remembers the new value. A
checkpoint (task claim, step recorded, failure, enqueue, end of a pass) proves in its own
transaction that the token is unchanged: the per-step statements carry the proof in their
WHERE clause (``still_ours``), the others run ``prove`` first. A process that lost the lock (its
lock file removed, its PostgreSQL session ended) and was overtaken by another cannot record
anything more: its transaction rolls back with a LockLostError and its pass stops.

The proof is serialised with the increment: on PostgreSQL the token is read ``FOR SHARE`` (or
updated), so a new holder's increment waits for the old holder's open checkpoint to commit;
on SQLite every write transaction is serialised anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, bindparam, insert, select, update

from syncd.errors import LockLostError
from syncd.state.db import display_url
from syncd.state.lock import RunLock, describe_holder, this_holder
from syncd.state.models import RunLockState

ROW = 1

_CURRENT = (
    select(RunLockState.token).where(RunLockState.id == ROW).with_for_update(read=True)
).scalar_subquery()
_TAKE = (
    update(RunLockState)
    .where(RunLockState.id == ROW)
    .values(token=RunLockState.token + 1, holder=bindparam("holder"), acquired_at=bindparam("now"))
)
_PROVE = (
    update(RunLockState)
    .where(RunLockState.id == ROW, RunLockState.token == bindparam("token"))
    .values(token=RunLockState.token)
)
_READ = select(RunLockState.token, RunLockState.holder).where(RunLockState.id == ROW)


def still_ours() -> ColumnElement[bool]:
    """A WHERE condition true while the token bound as ``:token`` is the store's."""
    return bindparam("token") == _CURRENT


def take(connection: Connection, now: datetime) -> int:
    """Increment the token for this process (which holds the run lock); return the new token."""
    if connection.execute(_TAKE, {"holder": this_holder(), "now": now}).rowcount != 1:
        # The row is made by the migration; put it back if someone deleted it.
        connection.execute(
            insert(RunLockState),
            {"id": ROW, "token": 1, "holder": this_holder(), "acquired_at": now},
        )
    return int(connection.execute(_READ).one().token)


def prove(connection: Connection, token: int) -> None:
    """Raise LockLostError unless ``token`` is still the store's (holds the token until commit)."""
    if connection.execute(_PROVE, {"token": token}).rowcount != 1:
        raise lost(connection)


def check(connection: Connection, token: int) -> None:
    """After a fenced statement changed nothing: raise LockLostError if the token moved on."""
    row = connection.execute(_READ).first()
    if row is None or row.token != token:
        raise lost(connection)


def lost(connection: Connection) -> LockLostError:
    """The error for a pass whose token was taken, naming the process that took it."""
    row = connection.execute(_READ).first()
    holder = row.holder if row is not None else ""
    return lost_error(display_url(connection.engine.url), _taken_by(holder))


def _taken_by(holder: str) -> str:
    described = describe_holder(holder)
    if described == "holder unknown":
        return "another syncd process took it"
    return f"another syncd process, {described}, took it"


def lost_error(where: str, cause: str) -> LockLostError:
    """The one line a pass that lost the run lock ends with."""
    return LockLostError(
        f"the run lock on {where} was lost ({cause}): this pass stops at its checkpoint"
    )


@dataclass(frozen=True)
class Fence:
    """A run lock this process holds and the token its acquisition took.

    Without a lock: an instance of a shared group (``state.shared``) working tasks under its
    instance token, which no run lock guards (each task's claim does).
    """

    token: int
    where: str
    """The state store, for messages (password masked)."""
    lock: RunLock | None

    @property
    def fenced(self) -> bool:
        """Whether checkpoints prove the token against the store's run-lock token."""
        return self.lock is not None

    def lost(self) -> LockLostError | None:
        """The error if this process saw its lock go (no query: a flag or a stat), else None."""
        if self.lock is None:
            return None
        reason = self.lock.lost_reason()
        return None if reason is None else lost_error(self.where, reason)
