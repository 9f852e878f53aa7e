"""A pass, a resync and a dry run as commands and the daemon start them: the App builds the
collaborators (``App.pass_context``) and the directory source, and ``syncd.pipeline.sync``
runs the pass on them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta

from syncd.app.context import App
from syncd.app.crl import refresh_if_due
from syncd.directory import open_source
from syncd.directory.base import DirectorySource
from syncd.directory.google import GoogleSource
from syncd.errors import LockHeldError
from syncd.pipeline import shared
from syncd.pipeline import sync as pipeline
from syncd.pipeline.runner import StepObserver, TaskResult
from syncd.pipeline.sync import PassContext, PassResult
from syncd.plan import Plan
from syncd.state.fencing import Fence


def _with_crl(app: App, ctx: PassContext) -> PassContext:
    """``ctx`` refreshing the CRL (``crl.output``) after the tasks, under the run lock."""
    if app.config.crl.output is None:
        return ctx
    return replace(ctx, after_tasks=lambda fence: _refresh(app, fence))


def _refresh(app: App, fence: Fence) -> None:
    refresh_if_due(app, fence)


def dry_run(app: App, *, allow_mass_deprovision: bool = False) -> PassResult:
    """What a pass would do now; changes nothing."""
    now = pipeline.utcnow()
    snapshot = open_source(app.config.directory, app.config.google).read(now)
    policy = app.policy(allow_mass_deprovision=allow_mass_deprovision)
    return pipeline.dry_run(app.database, snapshot, policy, now)


def sync_pass(
    app: App,
    *,
    allow_mass_deprovision: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> PassResult:
    """One full pass under the run lock (see syncd.pipeline.sync.sync_pass); in a shared
    group, planned under the run lock and worked with the group (syncd.pipeline.shared)."""
    ctx = _with_crl(app, app.pass_context(allow_mass_deprovision=allow_mass_deprovision))
    source = _group_source(app, ctx)
    if ctx.membership is not None:
        result = shared.planned_pass(
            ctx, source, on_plan=on_plan, on_done=on_done, stop=stop, on_step=on_step
        )
        assert result is not None  # no min_gap: always planned
        return result
    return pipeline.sync_pass(
        ctx, source, on_plan=on_plan, on_done=on_done, stop=stop, on_step=on_step
    )


def _group_source(app: App, ctx: PassContext) -> DirectorySource:
    """The directory source of a pass; in a shared group a Google Directory's reads take
    this member's share of the group's Google rate, as its Gmail calls do."""
    source = open_source(app.config.directory, app.config.google)
    if ctx.membership is not None and isinstance(source, GoogleSource):
        ctx.membership.share(source.directory.session.limiter)
    return source


def scheduled_pass(
    app: App,
    min_gap: timedelta | None,
    *,
    on_plan: Callable[[Plan], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> PassResult | None:
    """The daemon's scheduled pass. Alone: a full pass. In a shared group: a pass planned
    here unless another instance plans now or planned less than ``min_gap`` ago; then the
    queue is worked (None when there was nothing to do)."""
    if app.config.state.shared:
        ctx = _with_crl(app, app.pass_context())
        try:
            source = _group_source(app, ctx)
            result = shared.planned_pass(
                ctx,
                source,
                min_gap=min_gap,
                on_plan=on_plan,
                on_done=on_done,
                stop=stop,
                on_step=on_step,
            )
        except LockHeldError:
            result = None  # another instance is planning: its tasks are worked below
        return result or shared.work_queue(ctx, on_done=on_done, stop=stop, on_step=on_step)
    return sync_pass(app, on_plan=on_plan, on_done=on_done, stop=stop, on_step=on_step)


def work_queue(
    app: App,
    *,
    on_done: Callable[[TaskResult], None] | None = None,
    stop: threading.Event | None = None,
    on_step: StepObserver | None = None,
) -> PassResult | None:
    """A shared group's instance between passes: work the tasks free to claim, if any."""
    ctx = _with_crl(app, app.pass_context())
    return shared.work_queue(ctx, on_done=on_done, stop=stop, on_step=on_step)


def resync(
    app: App,
    emails: Sequence[str] | None,
    *,
    force: bool,
    on_done: Callable[[TaskResult], None] | None = None,
) -> PassResult:
    """Re-run the pipeline for named users (all managed users when ``emails`` is None)."""
    ctx = _with_crl(app, app.pass_context())
    if ctx.membership is not None:
        return shared.resync(ctx, emails, force=force, on_done=on_done)
    return pipeline.resync(ctx, emails, force=force, on_done=on_done)
