"""``syncd run``: the long-running service.

An APScheduler background scheduler starts a sync pass every ``schedule.interval`` (the first
one at start) and on each ``schedule.cron`` expression, with ``schedule.jitter``; never two
passes at once (a pass due while one runs is skipped, and the log says so), and the run lock
keeps a hand-run ``syncd sync``/``resync`` and the daemon apart (the loser says so). Reports
are not scheduled here: ``systemd/syncd-report.timer`` runs ``syncd report``.

At start, a database (or other dependency) that is not available yet is waited for with
backoff (logged, STATUS= says so, SIGTERM ends the wait): after a reboot PostgreSQL may start
later than syncd. A configuration that is wrong exits 2 at once.

systemd (``Type=notify``): READY=1 once the configuration and database checks pass, STATUS=
with the last pass's outcome, WATCHDOG=1 every half ``$WATCHDOG_USEC`` while the scheduler is
alive and passes make progress: no pass is running, or the running one finished a step or a
task within ``daemon.stall_timeout`` (:class:`PassProgress`). A stalled pass stops the pings,
and systemd restarts the service after ``WatchdogSec``; the new process resumes every task
from its checkpoint. SIGHUP reloads the configuration (a bad one is refused, logged, and the
running one kept); SIGTERM or SIGINT stop the runner from starting tasks or steps, give
running steps ``daemon.stop_timeout`` to reach their checkpoint (retry waits end at once),
and exit 0.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from syncd.app.context import App
from syncd.app.passes import scheduled_pass, work_queue
from syncd.app.setup import check_configuration
from syncd.budget import RetryBudget, StopRequested, spending
from syncd.config import Config, load_config, read_secret
from syncd.directory.base import SourceError
from syncd.errors import (
    EXIT_FAILURES,
    EXIT_OK,
    ConfigError,
    LockHeldError,
    LockLostError,
    SyncdError,
    UnavailableError,
)
from syncd.logs import log_context, register_secret, setup_logging
from syncd.pipeline.runner import TaskResult
from syncd.pipeline.shared import min_gap, nothing_to_claim
from syncd.pipeline.sync import PassResult
from syncd.service.metrics import Metrics
from syncd.service.progress import PassProgress
from syncd.service.sdnotify import notify, watchdog_period
from syncd.state.db import Database, database_error
from syncd.state.instances import Membership
from syncd.state.lock import RunLock, hold_sqlite_instance

log = logging.getLogger("syncd.daemon")

_IDLE_TICK = 1.0
WAIT_FIRST = 1.0
WAIT_MAX = 30.0
"""Backoff between start-up attempts while a dependency is unavailable (seconds)."""


def next_wait(previous: float | None) -> float:
    """The pause before the next start-up attempt: doubling from WAIT_FIRST up to WAIT_MAX."""
    return WAIT_FIRST if previous is None else min(previous * 2, WAIT_MAX)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def startup_checks(config: Config) -> None:
    """Raise unless what the configuration points at is usable: UnavailableError when only
    dependencies are unavailable (try again later), else ConfigError."""
    problems = check_configuration(config)
    if not problems:
        with App(config) as app:
            try:
                app.services().keys.close()
            except SyncdError as error:
                problems.append(error)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        if all(isinstance(problem, UnavailableError) for problem in problems):
            raise UnavailableError(f"{problems[0]}{more}")
        raise ConfigError("", f"{problems[0]}{more}")


def register_config_secrets(config: Config) -> None:
    """Teach the log filter the exact secret values this configuration references."""
    from sqlalchemy.engine import make_url

    for section, name, where in (
        (config.kacls, "wrapping_key", "kacls"),
        (config.google, "service_account_key", "google"),
    ):
        try:
            value = read_secret(section, name, where)
        except SyncdError:
            continue
        register_secret(value)
        if value and name == "service_account_key":
            import json

            try:
                info: dict[str, Any] = json.loads(value)
            except ValueError:
                continue
            register_secret(str(info.get("private_key", "")))
            register_secret(str(info.get("private_key_id", "")))
    register_secret(make_url(config.state.url).password)


class Daemon:
    """One ``syncd run`` process."""

    def __init__(self, config: Config, config_path: Path) -> None:
        self.config = config
        self.config_path = config_path
        self.stop = threading.Event()
        """Set on SIGTERM: the runner starts no task and no step after it."""
        self.metrics = Metrics()
        self._pass_lock = threading.Lock()
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._status = "starting"
        self._last_failure: str | None = None
        """The last pass's failure, logged once while passes keep failing with it."""
        self.progress = PassProgress()
        self._stall_reported = False
        self._instance_lock: RunLock | None = None
        self.membership: Membership | None = None
        """In a shared group (state.shared): this process's membership, for its lifetime."""

    # --- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        register_config_secrets(self.config)
        if not self._wait_until_usable():
            log.info("stopped while waiting for the dependencies")
            return EXIT_OK
        self._instance_lock = hold_sqlite_instance(
            self.config.state.url, self.config.state.lock_file
        )
        self.metrics.serve(self.config.metrics.listen)
        if self.config.state.shared:
            self.membership = Membership(
                Database.open(self.config.state.url, require_current=True),
                self.config.pipeline.workers,
            ).join()
        self._schedule(self.config, first_pass_now=True)
        self._scheduler.start()
        self.metrics.up.set(1)
        self._status = "ready; first pass starting" if self.config.schedule.interval else "ready"
        notify("READY=1", f"STATUS={self._status}", f"MAINPID={os.getpid()}")
        log.info("syncd run started (configuration %s)", self.config_path)
        return self._main_loop()

    def _wait_until_usable(self) -> bool:
        """Run the start-up checks until they pass; False if SIGTERM/SIGINT came first.

        A configuration error is raised at once (exit 2); an unavailable dependency is logged
        and tried again with backoff, and systemd is told (STATUS=, a longer start timeout, the
        watchdog). SIGHUP re-reads the configuration file before the next attempt.
        """
        wait: float | None = None
        while True:
            try:
                startup_checks(self.config)
                return True
            except UnavailableError as error:
                wait = next_wait(wait)
                log.warning("waiting %.0fs before trying again: %s", wait, error)
                notify(
                    f"STATUS=waiting for a dependency (next try in {wait:.0f}s): {error}",
                    f"EXTEND_TIMEOUT_USEC={int((wait + WAIT_MAX) * 1_000_000)}",
                    "WATCHDOG=1",
                )
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                try:
                    number = self._signals.get(timeout=min(left, _IDLE_TICK))
                except queue.Empty:
                    notify("WATCHDOG=1")
                    continue
                if number in (signal.SIGTERM, signal.SIGINT):
                    notify("STOPPING=1", "STATUS=stopped while waiting for a dependency")
                    return False
                if number == signal.SIGHUP:
                    self.config = load_config(self.config_path)
                    register_config_secrets(self.config)
                    break

    def _on_signal(self, number: int, _frame: object) -> None:
        self._signals.put(number)  # SimpleQueue.put is safe in a signal handler

    def _main_loop(self) -> int:
        period = watchdog_period()
        tick = min(period, _IDLE_TICK) if period else _IDLE_TICK
        while True:
            try:
                number = self._signals.get(timeout=tick)
            except queue.Empty:
                number = None
            if number == signal.SIGHUP:
                self._reload()
            elif number in (signal.SIGTERM, signal.SIGINT):
                return self._shutdown(signal.Signals(number).name)
            if period and self._alive() and self._progressing():
                notify("WATCHDOG=1")

    def _alive(self) -> bool:
        thread = getattr(self._scheduler, "_thread", None)
        return bool(self._scheduler.running) and (thread is None or thread.is_alive())

    def _progressing(self) -> bool:
        """False (and said once per stall) while the running pass makes no progress."""
        limit = self.config.daemon.stall_timeout
        quiet = self.progress.stalled_for(limit)
        if quiet is None:
            if self._stall_reported:
                log.info("the pass makes progress again")
                self._stall_reported = False
            return True
        if not self._stall_reported:
            self._stall_reported = True
            log.error(
                "the running pass has finished no step for %.0fs (daemon.stall_timeout %gs): "
                "watchdog pings stop, systemd restarts syncd if it stays stuck",
                quiet,
                limit,
            )
            notify(f"STATUS=stalled: no step finished for {quiet:.0f}s")
        return False

    def _shutdown(self, why: str) -> int:
        timeout = self.config.daemon.stop_timeout
        log.info(
            "%s received: stopping; running steps get %.0fs to reach a checkpoint", why, timeout
        )
        notify("STOPPING=1", "STATUS=stopping: letting running steps reach their checkpoint")
        self.stop.set()
        self.metrics.up.set(0)
        self._scheduler.shutdown(wait=False)
        # Held until exit: no pass can start from now on.
        if not self._pass_lock.acquire(timeout=timeout):
            log.error(
                "stop timeout (%.0fs) exceeded: exiting with steps in flight; "
                "the next start resumes them from their checkpoints",
                timeout,
            )
            logging.shutdown()
            os._exit(EXIT_FAILURES)
        if self.membership is not None:
            self.membership.leave()
            self.membership.database.close()
        if self._instance_lock is not None:
            self._instance_lock.release()
        self.metrics.close()
        log.info("stopped")
        return EXIT_OK

    # --- configuration --------------------------------------------------------------------

    def _schedule(self, config: Config, *, first_pass_now: bool) -> None:
        scheduler, schedule = self._scheduler, config.schedule
        for job in scheduler.get_jobs():
            job.remove()
        jitter = schedule.jitter
        if schedule.interval is not None:
            first = datetime.now(UTC)
            if not first_pass_now:
                first += timedelta(seconds=schedule.interval)
            scheduler.add_job(
                self._pass_job,
                IntervalTrigger(seconds=schedule.interval, jitter=jitter),
                args=["interval"],
                id="sync-interval",
                next_run_time=first,
                max_instances=3,
                coalesce=True,
                misfire_grace_time=None,
            )
        if config.state.shared:
            # Joins the passes other instances plan, and takes over a killed one's tasks.
            scheduler.add_job(
                self._work_job,
                IntervalTrigger(seconds=config.pipeline.poll_interval),
                id="work-queue",
                # Two, not one: while a drain runs, the next poll returns at once on the pass
                # lock; at its limit the scheduler would log a warning at every poll instead.
                max_instances=2,
                coalesce=True,
                misfire_grace_time=None,
            )
        for number, expression in enumerate(schedule.cron):
            scheduler.add_job(
                self._pass_job,
                CronTrigger.from_crontab(expression),
                args=[f"cron {expression!r}"],
                id=f"sync-cron-{number}",
                max_instances=3,
                coalesce=True,
                misfire_grace_time=None,
            )

    def _reload(self) -> None:
        log.info("SIGHUP received: reloading %s", self.config_path)
        notify("RELOADING=1", "STATUS=reloading the configuration")
        try:
            new = load_config(self.config_path)
            startup_checks(new)
            self.metrics.serve(new.metrics.listen)
        except SyncdError as error:
            log.error("reload refused, keeping the running configuration: %s", error)
            notify("READY=1", f"STATUS={self._status} (reload refused: {error})")
            return
        old, self.config = self.config, new
        setup_logging(new.logging.level, new.logging.format)
        register_config_secrets(new)
        if (old.schedule, old.pipeline.poll_interval) != (new.schedule, new.pipeline.poll_interval):
            self._schedule(new, first_pass_now=False)
        log.info("configuration reloaded from %s", self.config_path)
        notify("READY=1", f"STATUS={self._status} (configuration reloaded)")

    # --- jobs -----------------------------------------------------------------------------

    def _pass_job(self, trigger: str) -> None:
        if self.stop.is_set():
            return
        if not self._pass_lock.acquire(blocking=False):
            log.warning("the %s pass is skipped: the previous pass is still running", trigger)
            return
        try:
            if not self.stop.is_set():
                with log_context():
                    self._one_pass(self._scheduled)
        finally:
            self._pass_lock.release()

    def _work_job(self) -> None:
        """A shared group's instance between its passes: work any task free to claim."""
        if self.stop.is_set() or not self._pass_lock.acquire(blocking=False):
            return  # this instance's pass or drain is running, and works the queue itself
        try:
            if self.stop.is_set() or (
                self.membership and nothing_to_claim(self.membership.database)
            ):
                return
            with log_context():
                self._one_pass(self._queued)
        finally:
            self._pass_lock.release()

    def _scheduled(self, app: App) -> PassResult | None:
        return scheduled_pass(
            app,
            min_gap(self.config.schedule.interval),
            stop=self.stop,
            on_step=self._on_step,
            on_done=self._on_task,
            on_plan=self.metrics.observe_plan,
        )

    def _queued(self, app: App) -> PassResult | None:
        return work_queue(app, stop=self.stop, on_step=self._on_step, on_done=self._on_task)

    def _one_pass(self, run: Callable[[App], PassResult | None]) -> None:
        config = self.config
        app = App(config, self.membership)
        started = time.monotonic()
        outcome, described = "error", ""
        idle = repeated = False
        self.progress.started()
        try:
            # Retry waits outside the steps (directory reads) wake on stop too.
            with spending(RetryBudget(stop=self.stop)):
                result = run(app)
            if result is None:  # a shared group's instance found nothing to do
                idle = True
                return
            outcome = result.outcome
            summary = result.summary()
            described = (
                f"pass {result.run_id}: {outcome}, {summary['done']} done, "
                f"{summary['failed']} failed, {summary['stopped']} stopped"
            )
            log.info("%s", described)
            self._recovered()
        except StopRequested:
            outcome, described = "stopped", "pass stopped while waiting to retry a directory read"
            log.info("%s", described)
        except LockHeldError as error:
            outcome, described = "locked", f"pass skipped: {error}"
            repeated = self._failed(logging.WARNING, described)
        except LockLostError as error:
            outcome, described = "lock_lost", f"pass stopped: {error}"
            repeated = self._failed(logging.ERROR, described)
        except SourceError as error:
            outcome, described = "source_failed", f"pass failed: cannot read the directory: {error}"
            repeated = self._failed(logging.ERROR, described)
        except SyncdError as error:
            described = f"pass failed: {error}"
            repeated = self._failed(logging.ERROR, described)
        except DBAPIError as error:  # the database went away or filled up mid-pass: one line
            described = f"pass failed: {database_error(error, config.state.url)}"
            repeated = self._failed(logging.ERROR, described)
        except SQLAlchemyError as error:  # a connection the lost database left unusable
            message = " ".join(str(error).split())[:300]
            described = f"pass failed: state.url: {type(error).__name__}: {message}"
            repeated = self._failed(logging.ERROR, described)
        except Exception:
            described = "pass failed unexpectedly (see the log)"
            log.exception("pass failed unexpectedly")
        finally:
            self.progress.ended()
            ended = datetime.now(UTC)
            if not idle:
                self.metrics.observe_pass(outcome, time.monotonic() - started, ended)
            # A failure repeating (a shared group polls the queue every 10 s) re-reads nothing
            # for the metrics: the first one did.
            if not idle and not repeated:
                try:
                    self.metrics.refresh_state(app.database, config.report.expiring_days, ended)
                    if config.state.shared:
                        self.metrics.refresh_instances(app.database, ended)
                except Exception as error:  # metrics must never break the daemon
                    log.warning("metrics: cannot read the state store: %s", error)
            app.close()
        self._status = f"last pass at {_stamp(ended)}: {described}"
        notify(f"STATUS={self._status}")

    def _failed(self, level: int, described: str) -> bool:
        """Log a pass's failure once while it repeats (True: a repeat): a shared group's
        instance polls the queue every pipeline.poll_interval, and a permanent failure (a KMS
        refusing) would be logged thousands of times a day."""
        if described == self._last_failure:
            log.debug("%s (again)", described)
            return True
        self._last_failure = described
        log.log(level, "%s", described)
        return False

    def _recovered(self) -> None:
        if self._last_failure is not None:
            log.info("passes work again (the last failure was: %s)", self._last_failure)
            self._last_failure = None

    def _on_step(self, step: str, seconds: float, error: BaseException | None) -> None:
        self.progress.advanced()
        self.metrics.observe_step(step, seconds, error)

    def _on_task(self, result: TaskResult) -> None:
        self.progress.advanced()
        self.metrics.observe_task(result)


def run(config: Config) -> int:
    """Run the service until SIGTERM; the exit code."""
    if config.source_path is None:
        raise ConfigError("--config", "syncd run needs a configuration file to reload")
    return Daemon(config, config.source_path).run()
