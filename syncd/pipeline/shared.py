"""Passes of an instance in a shared group (``state.shared``): several syncd on one PostgreSQL.

One instance plans at a time: the run lock (a PostgreSQL advisory lock) is held while a pass
reads the directory, plans, records the snapshot and enqueues its tasks, and released before
the tasks run. Every instance then works the queue (``drain``): each worker claims the next
free task with FOR UPDATE SKIP LOCKED under its instance's token, with a lease renewed at each
checkpoint, so a user is worked on by one instance at a time and a killed instance's tasks are
taken over once their leases end (at once when it ran on the same host). Between passes an
instance looks for free tasks every ``pipeline.poll_interval`` (``work_queue``), so it joins a
pass another instance planned.

A group plans a pass per ``schedule.interval``, not one per instance: a scheduled pass whose
predecessor (any instance's) started less than ``min_gap`` ago only works the queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from syncd.directory.base import DirectorySource
from syncd.errors import LockHeldError, LockLostError
from syncd.logs import bind
from syncd.pipeline import plan_state, tasks
from syncd.pipeline.enqueue import enqueue
from syncd.pipeline.runner import Runner, StepObserver, TaskResult
from syncd.pipeline.sync import (
    PassContext,
    PassResult,
    crash_recorded,
    plan_and_record,
    resync_plan,
    utcnow,
)
from syncd.plan import Action, Plan
from syncd.state import fencing
from syncd.state.db import Database
from syncd.state.fencing import Fence
from syncd.state.instances import Membership
from syncd.state.runs import finish_run, start_run

log = logging.getLogger("syncd.pass")


def _membership(ctx: PassContext) -> Membership:
    if ctx.membership is None:
        raise ValueError("a shared pass needs the instance's membership (state.shared)")
    return ctx.membership


def min_gap(interval: float | None) -> timedelta:
    """A group plans one pass per interval: a scheduled pass less than half an interval (a
    minute without one) after the group's last only works the queue."""
    return timedelta(seconds=interval / 2 if interval else 60.0)


def nothing_to_claim(database: Database) -> bool:
    """A cheap look (an idle instance's poll opens nothing else): no task is free to claim.
    False when the store cannot be read: the pass that follows says why."""
    try:
        with database.engine.connect() as connection:
            return not tasks.claimable(connection, utcnow())
    except SQLAlchemyError:
        return False


def _due(ctx: PassContext, now: datetime, min_gap: timedelta | None) -> bool:
    if min_gap is None:
        return True
    with ctx.database.sessions() as session:
        last = plan_state.last_pass_start(session)
    return last is None or now - last >= min_gap


def _enqueue(ctx: PassContext, actions: Sequence[Action], run_id: int, fence: Fence) -> set[int]:
    """Enqueue under the run lock (proving its token); the tasks whose key is fresh."""
    fresh_keys: set[int] = set()
    with ctx.database.transaction() as session:
        fencing.prove(session.connection(), fence.token)
        enqueue(session, actions, run_id, utcnow(), fresh_keys, shared=True)
    return fresh_keys


def _drain(
    ctx: PassContext,
    run_id: int,
    *,
    on_done: Callable[[TaskResult], None] | None,
    stop: threading.Event | None,
    on_step: StepObserver | None,
    fresh_keys: set[int] | None = None,
) -> list[TaskResult]:
    """Claim and run free tasks under this instance's token until none is left."""
    membership = _membership(ctx)
    with ctx.database.engine.connect() as connection:
        if not tasks.claimable(connection, utcnow()):
            return []
    services = ctx.services()
    runner = Runner(
        ctx.database,
        services,
        ctx.settings,
        run_id,
        fence=Fence(membership.token, ctx.database.display_url, None),
        on_done=on_done,
        stop=stop,
        on_step=on_step,
        fresh_keys=fresh_keys or (),
    )
    try:
        return runner.drain()
    finally:
        services.keys.close()


def _finish(ctx: PassContext, result: PassResult) -> PassResult:
    """Refresh the CRL (under the run lock, unless another instance holds it: it refreshes
    then) and record this instance's part of the pass in its run row."""
    assert result.run_id is not None
    if ctx.after_tasks is not None:
        try:
            with ctx.run_lock() as fence:
                ctx.after_tasks(fence)
        except (LockHeldError, LockLostError) as error:
            log.info("the CRL is left to the instance planning now: %s", error)
    with ctx.database.transaction() as session:
        finish_run(session, result.run_id, result.outcome, utcnow(), result.summary())
    return result


def planned_pass(
    ctx: PassContext,
    source: DirectorySource,
    *,
    min_gap: timedelta | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> PassResult | None:
    """Plan a pass (holding the run lock while planning), then work the queue with the group.

    None when the group's last pass started less than ``min_gap`` ago (nothing planned).
    Raises LockHeldError when another instance is planning.
    """
    ctx.check_kms()
    with ctx.run_lock() as fence:
        now = utcnow()
        if not _due(ctx, now, min_gap):
            return None
        with ctx.database.transaction() as session:
            run_id = start_run(session, "sync", now)
        bind(pass_id=run_id)
        with crash_recorded(ctx, run_id):
            the_plan, queued, lost = plan_and_record(ctx, source, fence, run_id, now)
            if lost is not None:
                _record_lost(ctx, PassResult(the_plan, run_id=run_id), lost)
                raise lost
    if on_plan is not None:
        on_plan(the_plan)
    result = PassResult(the_plan, run_id=run_id)
    with crash_recorded(ctx, run_id):
        result.results = _drain(
            ctx, run_id, on_done=on_done, stop=stop, on_step=on_step, fresh_keys=queued.fresh_keys
        )
        return _finish(ctx, result)


def _record_lost(ctx: PassContext, result: PassResult, lost: LockLostError) -> None:
    assert result.run_id is not None
    try:
        with ctx.database.transaction() as session:
            finish_run(session, result.run_id, "lock_lost", utcnow(), {"error": str(lost)})
    except SQLAlchemyError as error:
        log.warning("cannot record the end of pass %s: %s", result.run_id, error)


def work_queue(
    ctx: PassContext,
    *,
    on_done: Callable[[TaskResult], None] | None = None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> PassResult | None:
    """Work the tasks free to claim (another instance's pass, a killed instance's tasks);
    None, and nothing recorded, when there is none."""
    with ctx.database.engine.connect() as connection:
        if not tasks.claimable(connection, utcnow()):
            return None
    ctx.check_kms()
    with ctx.database.transaction() as session:
        run_id = start_run(session, "work", utcnow())
    bind(pass_id=run_id)
    result = PassResult(Plan(()), run_id=run_id)
    with crash_recorded(ctx, run_id):
        result.results = _drain(ctx, run_id, on_done=on_done, stop=stop, on_step=on_step)
        return _finish(ctx, result)


def resync(
    ctx: PassContext,
    emails: Sequence[str] | None,
    *,
    force: bool,
    on_done: Callable[[TaskResult], None] | None = None,
) -> PassResult:
    """Enqueue the named users' tasks under the run lock, then work the queue with the group."""
    ctx.check_kms()
    with ctx.run_lock() as fence:
        now = utcnow()
        with ctx.database.transaction() as session:
            run_id = start_run(session, "resync", now)
        bind(pass_id=run_id)
        with crash_recorded(ctx, run_id):
            the_plan, unknown = resync_plan(ctx, emails, force, None, now)
            try:
                fresh_keys = _enqueue(ctx, the_plan.actions, run_id, fence)
            except LockLostError as error:
                _record_lost(ctx, PassResult(the_plan, run_id=run_id), error)
                raise
    result = PassResult(the_plan, run_id=run_id, unknown_users=unknown)
    with crash_recorded(ctx, run_id):
        result.results = _drain(
            ctx, run_id, on_done=on_done, stop=None, on_step=None, fresh_keys=fresh_keys
        )
        return _finish(ctx, result)
