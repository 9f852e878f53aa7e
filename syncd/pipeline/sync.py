"""One pass: read the directory, plan against the state store, run the tasks, record the run.

Also the on-demand variants: ``resync`` (repair or replace named users) and the dry run that
``syncd plan`` prints. The run lock is held for the whole pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from syncd.app import App
from syncd.budget import StopRequested
from syncd.directory import open_source
from syncd.directory.base import SourceError
from syncd.logs import bind, redact
from syncd.pipeline import skipped, tasks
from syncd.pipeline.runner import Runner, StepObserver, TaskResult
from syncd.plan import Action, Plan, Policy, on_demand, plan
from syncd.state import audit
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

    def summary(self) -> dict[str, object]:
        return {
            "planned": self.plan.counts(),
            "held": len(self.plan.held),
            "done": sum(1 for r in self.results if r.ok),
            "failed": len(self.failures),
            "stopped": len(self.stopped),
            "blocked_deprovisions": len(self.plan.blocked_deprovisions),
            "skipped_entries": self.plan.skipped_entries,
        }


def policy_for(app: App, allow_mass_deprovision: bool) -> Policy:
    config = app.config
    return Policy(
        renew_before=timedelta(days=config.certificate.renew_before_days),
        max_deprovision=config.policy.max_deprovision,
        allow_mass_deprovision=allow_mass_deprovision,
        deprovision_after=timedelta(seconds=config.policy.deprovision_after),
    )


def dry_run(app: App, *, allow_mass_deprovision: bool = False) -> PassResult:
    """What a pass would do now; changes nothing."""
    now = utcnow()
    snapshot = open_source(app.config.directory, app.config.google).read(now)
    with app.database.sessions() as session:
        views = tasks.load_views(session)
        skipped.log_changes(skipped.compare(session, snapshot))
    return PassResult(plan(snapshot, views, policy_for(app, allow_mass_deprovision), now))


def _execute(
    app: App,
    actions: Sequence[Action],
    run_id: int,
    on_done: Callable[[TaskResult], None] | None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> list[TaskResult]:
    with app.database.transaction() as session:
        task_ids = tasks.enqueue(session, actions, run_id, utcnow())
    if not task_ids:
        return []
    runner = Runner(
        app.database,
        app.services(),
        app.config.pipeline,
        run_id,
        on_done=on_done,
        stop=stop,
        on_step=on_step,
    )
    return runner.run(task_ids)


def _finish(app: App, result: PassResult) -> PassResult:
    assert result.run_id is not None
    outcome = "ok" if result.clean else "failures"
    if result.plan.blocked_reason:
        outcome = "blocked"
    if result.stopped:
        outcome = "stopped"
    with app.database.transaction() as session:
        finish_run(session, result.run_id, outcome, utcnow(), result.summary())
    return result


def describe_crash(error: BaseException) -> str:
    """One line for a pass that raised: the error's type and message, masked, cut short."""
    text = " ".join(str(error).split()) or repr(error)
    return redact(f"{type(error).__name__}: {text}")[:500]


@contextmanager
def crash_recorded(app: App, run_id: int) -> Iterator[None]:
    """Finish the run of a pass that raises: ``stopped`` for a stop, else ``error``.

    A pass that raised must not look like one still running. A SourceError is recorded by
    the pass itself (``source_failed``). If the state store cannot be written either, the run
    stays open and ``syncd health`` reports it as never finished.
    """
    try:
        yield
    except SourceError:
        raise
    except BaseException as error:
        stopped = isinstance(error, StopRequested | KeyboardInterrupt)
        outcome = "stopped" if stopped else "error"
        try:
            with app.database.transaction() as session:
                finish_run(session, run_id, outcome, utcnow(), {"error": describe_crash(error)})
        except Exception as failure:  # the original error is the one to report
            log.error("pass %d: cannot record its %s outcome: %s", run_id, outcome, failure)
        raise


def sync_pass(
    app: App,
    *,
    allow_mass_deprovision: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> PassResult:
    """One full pass under the run lock.

    ``stop``, once set, keeps the runner from starting another task or step (each task stays
    at its checkpoint for the next pass); ``on_step`` observes every step attempt.
    """
    source = open_source(app.config.directory, app.config.google)
    with app.run_lock():
        now = utcnow()
        with app.database.transaction() as session:
            run_id = start_run(session, "sync", now)
        bind(pass_id=run_id)
        with crash_recorded(app, run_id):
            try:
                snapshot = source.read(now)
                with app.database.sessions() as session:
                    views = tasks.load_views(session)
                the_plan = plan(snapshot, views, policy_for(app, allow_mass_deprovision), now)
            except SourceError as error:
                with app.database.transaction() as session:
                    audit.record(session, "pass.source_failed", run_id=run_id, error=str(error))
                    finish_run(session, run_id, "source_failed", utcnow(), {"error": str(error)})
                raise
            with app.database.transaction() as session:
                changes = tasks.record_snapshot(
                    session, snapshot, now, run_id, the_plan.kept_in_scope
                )
                if the_plan.blocked_reason:
                    audit.record(
                        session,
                        "pass.deprovision_blocked",
                        run_id=run_id,
                        reason=the_plan.blocked_reason,
                        users=[a.email for a in the_plan.blocked_deprovisions],
                    )
            skipped.log_changes(changes)
            if on_plan is not None:
                on_plan(the_plan)
            result = PassResult(the_plan, run_id=run_id)
            result.results = _execute(app, the_plan.actions, run_id, on_done, stop, on_step)
            return _finish(app, result)


def resync(
    app: App,
    emails: Sequence[str] | None,
    *,
    force: bool,
    on_done: Callable[[TaskResult], None] | None = None,
) -> PassResult:
    """Re-run the pipeline for named users (all managed users when ``emails`` is None)."""
    with app.run_lock():
        now = utcnow()
        with app.database.transaction() as session:
            run_id = start_run(session, "resync", now)
        bind(pass_id=run_id)
        with crash_recorded(app, run_id):
            with app.database.sessions() as session:
                views = tasks.load_views(session)
            wanted = (
                [e.strip().lower() for e in emails]
                if emails is not None
                else [v.email for v in views if v.in_scope and v.active is not None]
            )
            actions, unknown = on_demand(wanted, views, force=force)
            result = PassResult(Plan(tuple(actions)), run_id=run_id, unknown_users=unknown)
            result.results = _execute(app, actions, run_id, on_done)
            return _finish(app, result)
