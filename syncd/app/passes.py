"""A pass, a resync and a dry run as commands and the daemon start them: the App builds the
collaborators (``App.pass_context``) and the directory source, and ``syncd.pipeline.sync``
runs the pass on them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from syncd.app.context import App
from syncd.app.crl import refresh_if_due
from syncd.directory import open_source
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
    """One full pass under the run lock (see syncd.pipeline.sync.sync_pass)."""
    source = open_source(app.config.directory, app.config.google)
    return pipeline.sync_pass(
        _with_crl(app, app.pass_context(allow_mass_deprovision=allow_mass_deprovision)),
        source,
        on_plan=on_plan,
        on_done=on_done,
        stop=stop,
        on_step=on_step,
    )


def resync(
    app: App,
    emails: Sequence[str] | None,
    *,
    force: bool,
    on_done: Callable[[TaskResult], None] | None = None,
) -> PassResult:
    """Re-run the pipeline for named users (all managed users when ``emails`` is None)."""
    return pipeline.resync(
        _with_crl(app, app.pass_context()), emails, force=force, on_done=on_done
    )
