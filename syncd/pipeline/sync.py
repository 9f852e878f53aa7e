"""One pass: read the directory, plan against the state store, run the tasks, record the run.

Also the on-demand variants: ``resync`` (repair or replace named users) and the dry run that
``syncd plan`` prints. The run lock is held for the whole pass, and every checkpoint proves
its fencing token: a pass that lost the lock ends with outcome ``lock_lost`` and raises
LockLostError. Users whose task another pass still claims are held.

The pipeline does not open anything itself: a pass takes its collaborators (a PassContext and
the directory source) from the application layer (``syncd.app.passes``), which builds them
from the configuration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from syncd.budget import StopRequested
from syncd.config import PipelineConfig
from syncd.directory.base import DirectorySource, Snapshot, SourceError
from syncd.errors import LockLostError
from syncd.logs import bind, redact
from syncd.pipeline import plan_state, skipped
from syncd.pipeline.claims import hold_claimed
from syncd.pipeline.enqueue import enqueue
from syncd.pipeline.runner import Runner, StepObserver, TaskResult
from syncd.pipeline.steps import Services
from syncd.plan import Action, Plan, Policy, on_demand, plan
from syncd.state import audit, fencing
from syncd.state.db import Database
from syncd.state.fencing import Fence
from syncd.state.instances import Membership
from syncd.state.retention import prune_finished_tasks
from syncd.state.runs import finish_run, start_run

log = logging.getLogger("syncd.pass")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassResult:
    plan: Plan
    results: list[TaskResult] = field(default_factory=list)
    run_id: int | None = None
    unknown_users: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[TaskResult]:
        return [r for r in self.results if not r.ok and not r.stopped]

    @property
    def stopped(self) -> list[TaskResult]:
        """Tasks left at their checkpoint because the pass was asked to stop."""
        return [r for r in self.results if r.stopped]

    @property
    def clean(self) -> bool:
        return (
            not self.failures
            and not self.stopped
            and self.plan.blocked_reason is None
            and not self.unknown_users
        )

    @property
    def outcome(self) -> str:
        """What the runs table records for a pass that ended with this result."""
        if self.stopped:
            return "stopped"
        if self.plan.blocked_reason:
            return "blocked"
        return "ok" if self.clean else "failures"

    def summary(self) -> dict[str, object]:
        return {
            "planned": self.plan.counts(),
            "held": len(self.plan.held),
            "done": sum(1 for r in self.results if r.ok),
            "failed": len(self.failures),
            "stopped": len(self.stopped),
            "blocked_deprovisions": len(self.plan.blocked_deprovisions),
            "skipped_entries": self.plan.skipped_entries,
            "pending_reissue": self.plan.pending_reissue,
            "deferred_new": self.plan.deferred_new,
        }


@dataclass(frozen=True)
class PassContext:
    """What a pass acts on, built by the application layer from the configuration.

    ``services`` opens what the steps act on (KMS, Gmail, issuing CA) when there is work;
    ``check_kms`` proves the KMS usable before the run lock is taken (it raises otherwise);
    ``run_lock`` holds the run lock and yields its fence.
    """

    database: Database
    settings: PipelineConfig
    policy: Policy
    services: Callable[[], Services]
    check_kms: Callable[[], None]
    run_lock: Callable[[], AbstractContextManager[Fence]]
    after_tasks: Callable[[Fence], None] | None = None
    """Run under the run lock once a pass's or a resync's tasks are done (the CRL refresh)."""
    membership: Membership | None = None
    """This instance's membership of a shared group (``state.shared``, run by
    syncd.pipeline.shared), or None: the only instance."""
    keep_finished_tasks: timedelta | None = None
    """Finished tasks older than this are deleted when a pass records its snapshot
    (``state.keep_finished_tasks``); None keeps them."""


def dry_run(database: Database, snapshot: Snapshot, policy: Policy, now: datetime) -> PassResult:
    """What a pass would do at ``now`` with ``snapshot`` (already read); changes nothing."""
    with database.sessions() as session:
        views = plan_state.load_views(session)
        skipped.log_changes(skipped.compare(session, snapshot))
        held = plan_state.held_by_others(session, None, now)
        last_pass = plan_state.last_pass_start(session)
    the_plan = plan(snapshot, views, policy, now, last_pass)
    return PassResult(hold_claimed(the_plan, held))


@dataclass(frozen=True)
class Queued:
    """The tasks a plan's actions were enqueued as, and those whose key is fresh."""

    task_ids: list[int] = field(default_factory=list)
    fresh_keys: set[int] = field(default_factory=set)


def _enqueue_actions(
    session: Session, actions: Sequence[Action], run_id: int, *, shared: bool
) -> Queued:
    fresh_keys: set[int] = set()
    task_ids = enqueue(session, actions, run_id, utcnow(), fresh_keys, shared=shared)
    return Queued(task_ids, fresh_keys)


def _execute(
    ctx: PassContext,
    actions: Sequence[Action],
    run_id: int,
    fence: Fence,
    on_done: Callable[[TaskResult], None] | None,
) -> tuple[list[TaskResult], LockLostError | None]:
    """Enqueue and run the actions (a resync's); the results, and the error if the lock was
    lost."""
    try:
        with ctx.database.transaction() as session:
            fencing.prove(session.connection(), fence.token)
            queued = _enqueue_actions(session, actions, run_id, shared=False)
    except LockLostError as error:
        return [], error
    return _run_queued(ctx, queued, run_id, fence, on_done)


def _run_queued(
    ctx: PassContext,
    queued: Queued,
    run_id: int,
    fence: Fence,
    on_done: Callable[[TaskResult], None] | None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> tuple[list[TaskResult], LockLostError | None]:
    """Run the queued tasks; the results, and the error if the lock was lost."""
    if not queued.task_ids:
        return [], None
    services = ctx.services()
    runner = Runner(
        ctx.database,
        services,
        ctx.settings,
        run_id,
        fence=fence,
        on_done=on_done,
        stop=stop,
        on_step=on_step,
        fresh_keys=queued.fresh_keys,
    )
    try:
        return runner.run(queued.task_ids), runner.lock_lost
    finally:
        services.keys.close()  # a KMS's connections end with the pass


def _finish(
    ctx: PassContext, result: PassResult, fence: Fence, lost: LockLostError | None = None
) -> PassResult:
    """Record the pass's outcome (proving the token); raise LockLostError if it was lost."""
    assert result.run_id is not None
    if lost is None and ctx.after_tasks is not None:
        try:
            ctx.after_tasks(fence)
        except LockLostError as error:
            lost = error
    outcome = result.outcome
    if lost is None:
        try:
            with ctx.database.transaction() as session:
                fencing.prove(session.connection(), fence.token)
                finish_run(session, result.run_id, outcome, utcnow(), result.summary())
            return result
        except LockLostError as error:
            lost = error
    _record_lock_lost(ctx, result, lost)
    raise lost


def _record_lock_lost(ctx: PassContext, result: PassResult, lost: LockLostError) -> None:
    """Close this pass's own run row as ``lock_lost`` (no proof: no other pass writes it)."""
    assert result.run_id is not None
    try:
        with ctx.database.transaction() as session:
            audit.record(session, "pass.lock_lost", run_id=result.run_id, error=str(lost))
            finish_run(session, result.run_id, "lock_lost", utcnow(), result.summary())
    except SQLAlchemyError as error:
        log.warning("cannot record the end of pass %s: %s", result.run_id, error)


def describe_crash(error: BaseException) -> str:
    """One line for a pass that raised: the error's type and message, masked, cut short."""
    text = " ".join(str(error).split()) or repr(error)
    return redact(f"{type(error).__name__}: {text}")[:500]


@contextmanager
def crash_recorded(ctx: PassContext, run_id: int) -> Iterator[None]:
    """Finish the run of a pass that raises: ``stopped`` for a stop, else ``error``.

    A pass that raised must not look like one still running. A SourceError and a lost lock
    are recorded by the pass itself (``source_failed``, ``lock_lost``). If the state store
    cannot be written either, the run stays open and ``syncd health`` reports it as never
    finished.
    """
    try:
        yield
    except (SourceError, LockLostError):
        raise
    except BaseException as error:
        stopped = isinstance(error, StopRequested | KeyboardInterrupt)
        outcome = "stopped" if stopped else "error"
        try:
            with ctx.database.transaction() as session:
                finish_run(session, run_id, outcome, utcnow(), {"error": describe_crash(error)})
        except Exception as failure:
            # Usually the same cause (database gone, disk full): the original error is the one
            # line to report, and `syncd health` shows the run as never finished.
            log.debug("pass %d: cannot record its %s outcome: %s", run_id, outcome, failure)
        raise


def sync_pass(
    ctx: PassContext,
    source: DirectorySource,
    *,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> PassResult:
    """One full pass under the run lock.

    ``stop``, once set, keeps the runner from starting another task or step (each task stays
    at its checkpoint for the next pass); ``on_step`` observes every step attempt.
    """
    ctx.check_kms()  # nothing is written when the KMS cannot be used
    with ctx.run_lock() as fence:
        now = utcnow()
        with ctx.database.transaction() as session:
            run_id = start_run(session, "sync", now)
        bind(pass_id=run_id)
        with crash_recorded(ctx, run_id):
            the_plan, queued, lost = plan_and_record(ctx, source, fence, run_id, now)
            if lost is not None:
                return _finish(ctx, PassResult(the_plan, run_id=run_id), fence, lost)
            if on_plan is not None:
                on_plan(the_plan)
            result = PassResult(the_plan, run_id=run_id)
            result.results, lost = _run_queued(ctx, queued, run_id, fence, on_done, stop, on_step)
            return _finish(ctx, result, fence, lost)


def plan_and_record(
    ctx: PassContext, source: DirectorySource, fence: Fence, run_id: int, now: datetime
) -> tuple[Plan, Queued, LockLostError | None]:
    """Read the directory, plan against the store, record the snapshot and enqueue the
    plan's actions (proving the run-lock token); the plan, what was queued, and the error if
    the lock was lost. Users with a task another process holds a live claim on are held (in a
    shared group: any claim, this instance's own workers included).

    The snapshot and the tasks are one transaction: recording applies a rename's new address
    and a reassigned address's new directory id, which the next plan no longer sees as
    changes, so a pass stopped between the two would lose the rename or reassignment."""
    holds_for = None if ctx.membership is not None else fence.token
    try:
        snapshot = source.read(now)
        with ctx.database.sessions() as session:
            views = plan_state.load_views(session)
            held = plan_state.held_by_others(session, holds_for, now)
            last_pass = plan_state.last_pass_start(session, run_id)
        the_plan = plan(snapshot, views, ctx.policy, now, last_pass)
        del views  # one per user: freed before the snapshot is recorded (peak memory)
        the_plan = hold_claimed(the_plan, held)
    except SourceError as error:
        with ctx.database.transaction() as session:
            audit.record(session, "pass.source_failed", run_id=run_id, error=str(error))
            finish_run(session, run_id, "source_failed", utcnow(), {"error": str(error)})
        raise
    try:
        with ctx.database.transaction() as session:
            fencing.prove(session.connection(), fence.token)
            changes = plan_state.record_snapshot(
                session,
                snapshot,
                now,
                run_id,
                the_plan.kept_in_scope,
                the_plan.renames,
                the_plan.reassigned,
            )
            if ctx.keep_finished_tasks is not None:
                cutoff = now - ctx.keep_finished_tasks
                if pruned := prune_finished_tasks(session.connection(), cutoff):
                    log.info("deleted %d tasks finished before %s", pruned, cutoff)
            if the_plan.blocked_reason:
                audit.record(
                    session,
                    "pass.deprovision_blocked",
                    run_id=run_id,
                    reason=the_plan.blocked_reason,
                    code=the_plan.blocked_code,
                    users=[a.email for a in the_plan.blocked_deprovisions],
                )
            queued = _enqueue_actions(
                session, the_plan.actions, run_id, shared=ctx.membership is not None
            )
    except LockLostError as error:
        return the_plan, Queued(), error
    skipped.log_changes(changes)
    return the_plan, queued, None


def resync_plan(
    ctx: PassContext,
    emails: Sequence[str] | None,
    force: bool,
    holds_for: int | None,
    now: datetime,
) -> tuple[Plan, list[str]]:
    """A resync's plan (all managed users when ``emails`` is None), users whose task another
    claim covers held (``holds_for``: this pass's run-lock token; None: any claim), and the
    named users the store does not know."""
    with ctx.database.sessions() as session:
        views = plan_state.load_views(session)
        held = plan_state.held_by_others(session, holds_for, now)
    wanted = (
        list(dict.fromkeys(e.strip().lower() for e in emails))  # a user named twice: once
        if emails is not None
        else [v.email for v in views if v.in_scope and v.active is not None]
    )
    actions, unknown = on_demand(wanted, views, force=force)
    return hold_claimed(Plan(tuple(actions)), held), unknown


def resync(
    ctx: PassContext,
    emails: Sequence[str] | None,
    *,
    force: bool,
    on_done: Callable[[TaskResult], None] | None = None,
) -> PassResult:
    """Re-run the pipeline for named users (all managed users when ``emails`` is None)."""
    ctx.check_kms()
    with ctx.run_lock() as fence:
        now = utcnow()
        with ctx.database.transaction() as session:
            run_id = start_run(session, "resync", now)
        bind(pass_id=run_id)
        with crash_recorded(ctx, run_id):
            the_plan, unknown = resync_plan(ctx, emails, force, fence.token, now)
            result = PassResult(the_plan, run_id=run_id, unknown_users=unknown)
            result.results, lost = _execute(ctx, the_plan.actions, run_id, fence, on_done)
            return _finish(ctx, result, fence, lost)
