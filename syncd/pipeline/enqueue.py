"""Queueing: the plan's actions turned into tasks, with a new key pair generation where one
is needed. Open tasks are resumed or cancelled; in a shared group a task another instance holds
a live claim on is left alone. Every function takes the caller's Session and leaves committing
to it, so the whole queue changes in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from syncd.domain import ActionKind, KeyPairStatus, TaskKind, TaskStatus
from syncd.pipeline.steps import PIPELINES
from syncd.pipeline.tasks import OPEN
from syncd.plan import Action, TaskView
from syncd.state import audit
from syncd.state.models import KeyPair, Task, User

log = logging.getLogger("syncd.pipeline")

ENQUEUE_CHUNK = 500  # users looked up per query (SQLite caps bound parameters)


def enqueue(
    session: Session,
    actions: Sequence[Action],
    run_id: int | None,
    now: datetime,
    fresh_keys: set[int] | None = None,
    *,
    shared: bool = False,
) -> list[int]:
    """Tasks for the actions: open tasks resumed, new ones created. Returns their ids, and
    adds to ``fresh_keys`` those of the tasks that start a key pair generation made now (no
    key can have been created for it yet).

    ``shared``: other instances claim tasks meanwhile. The users' open tasks are locked while
    they are changed, and one another instance holds a live claim on is left alone (the
    plan's hold saw the claims of a moment earlier).
    """
    queued: list[Task] = []
    new_generations: list[Task] = []
    for first in range(0, len(actions), ENQUEUE_CHUNK):
        chunk = actions[first : first + ENQUEUE_CHUNK]
        queued += _enqueue_chunk(session, chunk, run_id, now, new_generations, shared)
    session.flush()
    if fresh_keys is not None:
        fresh_keys.update(task.id for task in new_generations)
    return [task.id for task in queued]


@dataclass
class _Known:
    """What enqueuing needs to know of a chunk's users, read in four queries."""

    users: dict[str, User]
    open_tasks: dict[int, Task]
    latest_generation: dict[int, int]
    active: dict[int, KeyPair]


def _known(session: Session, actions: Sequence[Action], now: datetime, lock: bool) -> _Known:
    emails = [action.email for action in actions]
    users = {u.email: u for u in session.scalars(select(User).where(User.email.in_(emails)))}
    for action in actions:
        if action.email not in users:
            users[action.email] = User(
                email=action.email,
                directory_id=action.directory_id or action.email,
                source="manual",
                first_seen=now,
                last_seen=now,
            )
            session.add(users[action.email])
    session.flush()
    ids = [user.id for user in users.values()]
    open_query = select(Task).where(Task.user_id.in_(ids), Task.status.in_(OPEN))
    if lock:
        open_query = open_query.with_for_update()
    open_tasks = {task.user_id: task for task in session.scalars(open_query)}
    latest = {
        user_id: generation
        for user_id, generation in session.execute(
            select(KeyPair.user_id, func.max(KeyPair.generation))
            .where(KeyPair.user_id.in_(ids))
            .group_by(KeyPair.user_id)
        )
    }
    active = {
        kp.user_id: kp  # ordered by generation: the newest active one wins
        for kp in session.scalars(
            select(KeyPair)
            .where(KeyPair.user_id.in_(ids), KeyPair.status == KeyPairStatus.ACTIVE)
            .order_by(KeyPair.generation)
        )
    }
    return _Known(users, open_tasks, latest, active)


def _enqueue_chunk(
    session: Session,
    actions: Sequence[Action],
    run_id: int | None,
    now: datetime,
    new_generations: list[Task],
    shared: bool,
) -> list[Task]:
    known = _known(session, actions, now, lock=shared)
    queued = []
    for action in actions:
        user = known.users[action.email]
        task = known.open_tasks.get(user.id)
        if shared and task is not None and _live_claim(task, now):
            log.info("%s: left alone, another instance is running its task %d", user.email, task.id)
            continue
        continues = action.kind in (ActionKind.RESUME, ActionKind.RETRY)
        if shared and continues and _moved_since_plan(task, action.seen_task):
            log.info(
                "%s: left alone, another instance worked on its task since the plan was made",
                user.email,
            )
            continue
        if continues and task is not None:
            task.status = TaskStatus.PENDING
            task.next_attempt_at = None
            task.permanent = False
        else:
            if task is not None:
                task.status = TaskStatus.CANCELLED
                task.finished_at = now
                audit.record(
                    session,
                    "task.cancelled",
                    user=user,
                    run_id=run_id,
                    task_id=task.id,
                    superseded_by=action.task_kind,
                )
                session.flush()  # the old task leaves "open" before the new one arrives
            task = _new_task(session, user, action, now, known)
            if task.kind in _NEW_GENERATION:  # its key pair generation was made just now
                new_generations.append(task)
        task.run_id = run_id
        queued.append(task)
        if task.kind is TaskKind.VERIFY:  # audited only when it finds drift
            continue
        audit.record(
            session,
            f"plan.{action.kind.value}",
            user=user,
            run_id=run_id,
            reason=action.reason,
            code=action.code.value if action.code is not None else None,
            task_kind=task.kind.value,
        )
    return queued


def _moved_since_plan(task: Task | None, seen: TaskView | None) -> bool:
    """The open task a resume or retry was planned for has finished, failed or advanced since
    the plan saw it (None: an action made outside the plan, taken as planned)."""
    if seen is None:
        return False
    return task is None or (task.kind, task.status, task.next_step, task.attempts) != (
        seen.kind,
        seen.status,
        seen.next_step,
        seen.attempts,
    )


def _live_claim(task: Task, now: datetime) -> bool:
    return (
        task.status is TaskStatus.RUNNING
        and task.lease_until is not None
        and task.lease_until > now
    )


_NEW_GENERATION = (
    TaskKind.PROVISION,
    TaskKind.RENEW,
    TaskKind.REPLACE,
    TaskKind.RENAME,
    TaskKind.REASSIGN,
)
"""Task kinds that work on a key pair generation of their own, made when they are."""


_ON_ACTIVE = (TaskKind.REPAIR, TaskKind.VERIFY)
"""Task kinds that work on the active generation (none: the user is provisioned instead)."""


def _new_generation(user: User, now: datetime, known: _Known) -> KeyPair:
    generation = known.latest_generation.get(user.id, 0) + 1
    known.latest_generation[user.id] = generation
    return KeyPair(
        user_id=user.id,
        generation=generation,
        status=KeyPairStatus.PENDING,
        kms_label=f"syncd:{user.email}:g{generation}:{int(now.timestamp())}",
        created_at=now,
    )


def _new_task(session: Session, user: User, action: Action, now: datetime, known: _Known) -> Task:
    kind = action.task_kind
    key_pair: KeyPair | None = None
    if kind in _ON_ACTIVE:
        key_pair = known.active.get(user.id)
        if key_pair is None:
            kind = TaskKind.PROVISION
    if kind in _NEW_GENERATION:
        key_pair = _new_generation(user, now, known)
    task = Task(
        user_id=user.id,
        kind=kind,
        status=TaskStatus.PENDING,
        reason=action.reason,
        next_step=PIPELINES[kind][0],
        key_pair=key_pair,
        created_at=now,
    )
    session.add(task)
    return task
