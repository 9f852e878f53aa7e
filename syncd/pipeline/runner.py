"""The pipeline runner: runs tasks with a bounded pool of workers, one task per user.

Each task walks its steps from its checkpoint. A transient failure (Google 429/5xx, a dropped
connection) is retried inside the task with backoff, within one retry budget per step
(:mod:`syncd.budget`: ``pipeline.step_retries`` retries and ``pipeline.step_time_limit``,
shared with the Google client's own retries); a task that keeps failing, or fails for a
reason retrying won't fix, is marked failed with its error and left for a later pass (its
backoff); a PermanentError marks it failed permanently: no later pass retries it until a
resync. One user's failure never stops the others. Every retry wait wakes on the stop event:
the task then stays at its checkpoint.

Each task is claimed under the pass's run-lock token, and every checkpoint proves the token is
still the store's. Once the lock is lost (seen locally, or a checkpoint's proof fails) no task
starts and no step begins: each task stays at its checkpoint, its claim released, and
``lock_lost`` holds the error the pass ends with.

In a shared group (``state.shared``) the runner drains the queue instead (``drain``): each
worker claims the next free task (FOR UPDATE SKIP LOCKED) under the instance's token until
none is left, and a task whose claim another instance took over (ClaimLostError) is dropped
by this one, the others going on.

A checkpoint whose database session the server ended (a restart, a failover) leaves that task
at its previous checkpoint, released for whoever resumes it; the pass goes on with the other
tasks. Any other database failure (a full disk, a server that refuses connections) ends the
pass at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from syncd.budget import RetryBudget, StopRequested, spending
from syncd.config import PipelineConfig
from syncd.domain import TaskKind
from syncd.errors import ClaimLostError, KMSUnavailableError, LockLostError, PermanentError
from syncd.google.errors import GoogleAPIError
from syncd.logs import bind, log_context
from syncd.pipeline import tasks
from syncd.pipeline.claims import Claim
from syncd.pipeline.crashpoints import crash_point
from syncd.pipeline.steps import STEPS, Outcome, Services, Work
from syncd.state.db import Database, database_error, session_lost
from syncd.state.fencing import Fence

log = logging.getLogger("syncd.pipeline")

T = TypeVar("T")

MAX_STEP_BACKOFF = 8.0
SESSION_ATTEMPTS = 3
"""Tries of a claim, or of a release after a cut checkpoint, on new sessions while the server
keeps ending them, before the pass fails."""

_BEFORE_KEY = ("check_existing", "create_key")
"""A task whose first claim starts at one of these has not tried create_key yet (see
Work.fresh_key)."""


@dataclass(frozen=True)
class TaskResult:
    task_id: int
    email: str
    kind: TaskKind
    ok: bool
    failed_step: str | None = None
    error: str | None = None
    stopped: bool = False
    """Left at its checkpoint because the runner was asked to stop; resumed by a later pass."""


StepObserver = Callable[[str, float, BaseException | None], None]
"""Called after every attempt of a step: (step name, seconds taken, error or None)."""


def is_transient(error: BaseException) -> bool:
    """Worth running the step again within this pass."""
    if isinstance(error, GoogleAPIError):
        return error.retryable and not error.later
    # The KMS unreachable or its session dropped; a refusal (KMSRefusedError) is permanent.
    if isinstance(error, DBAPIError):  # the embedded KMS's store, or a step's own reads
        return session_lost(error)
    return isinstance(error, ConnectionError | TimeoutError | KMSUnavailableError)


def step_backoff(attempt: int) -> float:
    return float(min(0.25 * 2 ** (attempt - 1), MAX_STEP_BACKOFF) * (0.5 + random.random() / 2))


class Runner:
    def __init__(
        self,
        database: Database,
        services: Services,
        config: PipelineConfig,
        run_id: int | None,
        *,
        fence: Fence,
        sleep: Callable[[float], None] = time.sleep,
        on_done: Callable[[TaskResult], None] | None = None,
        stop: threading.Event | None = None,
        on_step: StepObserver | None = None,
        fresh_keys: Collection[int] = (),
    ) -> None:
        self.database = database
        self.services = services
        self.config = config
        self.run_id = run_id
        self.sleep = sleep
        self.on_done = on_done
        self.stop = stop
        """When set, no task starts and no step begins: each task stays at its checkpoint."""
        self.on_step = on_step
        self.fence = fence
        self.claim = Claim(
            fence.token, timedelta(seconds=config.claim_timeout), fenced=fence.fenced
        )
        self.lock_lost: LockLostError | None = None
        """Set once this pass lost the run lock: the error the pass ends with."""
        self._lost_mutex = threading.Lock()
        self._fresh_mutex = threading.Lock()
        self._fresh_keys = set(fresh_keys)
        """Tasks whose key pair generation this pass's plan made (see Work.fresh_key); a task
        leaves the set when it starts, so only its first start counts."""

    def _first_start_of_fresh_key(self, task_id: int) -> bool:
        with self._fresh_mutex:
            fresh = task_id in self._fresh_keys
            self._fresh_keys.discard(task_id)
        return fresh

    def _lose(self, error: LockLostError) -> None:
        with self._lost_mutex:
            if self.lock_lost is None:
                self.lock_lost = error
                log.error("%s", error)

    def _stopping(self) -> bool:
        if self.lock_lost is None and (lost := self.fence.lost()) is not None:
            self._lose(lost)
        return self.lock_lost is not None or (self.stop is not None and self.stop.is_set())

    def _stopped(self, task_id: int, step: str | None) -> TaskResult:
        with self.database.engine.begin() as connection:
            if step is not None:
                # Nothing of this task is in flight: another pass may take it at once.
                tasks.release(connection, task_id, self.claim.token)
            work, _ = tasks.load_work(connection, task_id)
        where = f"at its checkpoint {step}" if step else "pending"
        log.info("stopping: %s %s left %s", work.kind, work.email, where)
        return TaskResult(task_id, work.email, work.kind, False, step, None, stopped=True)

    def _unrecorded(self, work: Work, step: str, error: DBAPIError) -> TaskResult:
        """The database ended the session recording ``step`` (a restart, a failover, an
        administrator): the task is released at its last recorded checkpoint, where this pass's
        queue (shared group) or the next pass resumes it; the step looks before acting again.
        A database still unavailable for the release fails the pass."""
        message = f"{step}: not recorded: {database_error(error, self.database.engine.url)}"
        log.warning(
            "%s %s: %s; the task resumes at %s, which finds what this attempt did",
            work.kind,
            work.email,
            message,
            step,
        )
        self._in_new_sessions(
            lambda connection: tasks.release(connection, work.task_id, self.claim.token),
            f"releasing the task of {work.email}",
        )
        return TaskResult(work.task_id, work.email, work.kind, False, step, message)

    def _in_new_sessions(self, work: Callable[[Connection], T], what: str) -> T:
        """``work`` in a transaction, tried again on a new session while the server ends the
        sessions it runs on (up to SESSION_ATTEMPTS); any other database failure is raised."""
        for attempt in range(1, SESSION_ATTEMPTS + 1):
            try:
                with self.database.engine.begin() as connection:
                    return work(connection)
            except DBAPIError as error:
                if not session_lost(error) or attempt == SESSION_ATTEMPTS:
                    raise
                message = database_error(error, self.database.engine.url)
                log.warning("%s: %s; trying again on a new session", what, message)
        raise AssertionError("unreachable")

    def run(self, task_ids: Sequence[int]) -> list[TaskResult]:
        if not task_ids:
            return []
        workers = min(self.config.workers, len(task_ids))
        with ThreadPoolExecutor(workers, thread_name_prefix="syncd-worker") as pool:
            return list(pool.map(self._run_isolated, task_ids))

    def drain(self) -> list[TaskResult]:
        """Claim and run free tasks until none is left (a shared group's instance)."""
        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="syncd-worker") as pool:
            batches = list(pool.map(lambda _: self._drain_worker(), range(self.config.workers)))
        return [result for batch in batches for result in batch]

    def _drain_worker(self) -> list[TaskResult]:
        results = []
        while not self._stopping():
            # A claim whose session was ended rolled back: nothing was claimed.
            claimed = self._in_new_sessions(
                lambda connection: tasks.claim_next(
                    connection, self.run_id, self.claim, self.services.clock()
                ),
                "claiming a task",
            )
            if claimed is None:
                break
            results.append(self._run_isolated(claimed[0].task_id, claimed))
        return results

    def _run_isolated(
        self, task_id: int, claimed: tuple[Work, str | None] | None = None
    ) -> TaskResult:
        with log_context(pass_id=self.run_id):
            result = self._run_task(task_id, claimed)
        if self.on_done is not None:
            self.on_done(result)
        return result

    def _taken_over(self, work: Work, step: str | None, error: ClaimLostError) -> TaskResult:
        log.warning("%s %s: %s", work.kind, work.email, error)
        return TaskResult(work.task_id, work.email, work.kind, False, step, None, stopped=True)

    def _run_task(self, task_id: int, claimed: tuple[Work, str | None] | None = None) -> TaskResult:
        if claimed is not None:
            work, step = claimed
        else:
            if self._stopping():
                return self._stopped(task_id, None)
            try:
                with self.database.engine.begin() as connection:
                    work, step = tasks.start(
                        connection, task_id, self.run_id, self.claim, self.services.clock()
                    )
            except LockLostError as error:
                self._lose(error)
                return self._stopped(task_id, None)
        try:
            return self._walk(task_id, work, step)
        except ClaimLostError as error:
            return self._taken_over(work, step, error)

    def _walk(self, task_id: int, work: Work, step: str | None) -> TaskResult:
        fresh = self._first_start_of_fresh_key(task_id)
        # In a shared group another instance may have claimed the task first and made its
        # key before it was killed: only a first claim proves no create_key was tried.
        if not (fresh and work.first_claim and step in _BEFORE_KEY):
            return self._steps(task_id, work, step)
        work = replace(work, fresh_key=True)
        if step != "check_existing" or work.target is None:
            return self._steps(task_id, work, step)
        # The key is made while check_existing waits on Google (syncd.kms.ahead), and dropped
        # if the task ends without create_key taking it (a held user, a failure).
        label, bits = work.target.kms_label, self.services.key_bits
        self.services.kms.generate_ahead(label, bits)
        try:
            return self._steps(task_id, work, step)
        finally:
            self.services.kms.discard_ahead(label, bits)

    def _steps(self, task_id: int, work: Work, step: str | None) -> TaskResult:
        """Attempt and record each step from ``step`` on, until the task ends or stops."""
        now = self.services.clock
        bind(user=work.email)
        while step is not None:
            if self._stopping():
                return self._stopped(task_id, step)
            try:
                outcome = self._attempt_step(work, step)
            except StopRequested:
                return self._stopped(task_id, step)
            except LockLostError as error:
                self._lose(error)
                return self._stopped(task_id, step)
            except ClaimLostError:
                raise
            except Exception as error:  # any failure stays with this user's task
                if isinstance(error, DBAPIError):  # one line, not the driver's statement dump
                    error = database_error(error, self.database.engine.url)
                message = f"{step}: {error}" if str(error) else f"{step}: {error!r}"
                permanent = isinstance(error, PermanentError)
                try:
                    with self.database.transaction() as session:
                        retry_at = tasks.fail(
                            session,
                            task_id,
                            message,
                            now(),
                            self.run_id,
                            self.config.retry_initial,
                            self.config.retry_max,
                            self.claim,
                            permanent=permanent,
                        )
                except LockLostError as lost:
                    self._lose(lost)
                    return self._stopped(task_id, step)
                log.warning(
                    "%s %s failed%s at %s (%s): %s",
                    work.kind,
                    work.email,
                    " permanently" if permanent else "",
                    step,
                    f"not retried; fix the cause, then syncd resync --user {work.email}"
                    if retry_at is None
                    else f"retry after {retry_at:%Y-%m-%d %H:%M:%S}Z",
                    error,
                )
                return TaskResult(task_id, work.email, work.kind, False, step, message)
            crash_point(f"after:{step}")
            try:
                with self.database.engine.begin() as connection:
                    following = tasks.record_step(
                        connection, work, step, outcome, now(), self.run_id, self.claim
                    )
            except LockLostError as error:
                # The step's effect is not recorded: whoever resumes the task finds it (each
                # step looks before acting).
                self._lose(error)
                return self._stopped(task_id, step)
            except DBAPIError as error:
                if not session_lost(error):
                    raise
                return self._unrecorded(work, step, error)
            crash_point(f"committed:{step}")
            work, step = work.after(outcome), following
        log.info("%s %s done", work.kind, work.email)
        return TaskResult(task_id, work.email, work.kind, True)

    def _budget(self) -> RetryBudget:
        return RetryBudget(
            retries=self.config.step_retries,
            seconds=self.config.step_time_limit,
            stop=self.stop,
            sleep=self.sleep,
        )

    def _attempt_step(self, work: Work, step: str) -> Outcome:
        attempts = self.config.step_attempts
        with spending(self._budget()) as budget:
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    self._renew(work.task_id)
                crash_point(f"before:{step}")
                started = time.monotonic()
                try:
                    outcome = STEPS[step](work, self.services)
                except StopRequested:
                    raise
                except Exception as error:
                    self._observe(step, started, error)
                    if attempt == attempts or not is_transient(error):
                        raise
                    delay = step_backoff(attempt)
                    refusal = budget.refusal(delay)
                    if refusal is not None:
                        log.info("%s for %s: %s; not retried: %s", step, work.email, error, refusal)
                        raise
                    # The failed attempt may have reached Gmail or the KMS: look before acting
                    # again.
                    work = replace(work, fresh_certificate=False, fresh_key=False)
                    log.info(
                        "%s for %s: %s; attempt %d of %d in %.1fs",
                        step,
                        work.email,
                        error,
                        attempt + 1,
                        attempts,
                        delay,
                    )
                    budget.spend(delay)
                    continue
                self._observe(step, started, None)
                return outcome
        raise AssertionError("unreachable")

    def _renew(self, task_id: int) -> None:
        """Before a step is attempted again: the lock must still be ours, and the claim is
        extended so the attempt runs inside it (raises LockLostError)."""
        if (lost := self.fence.lost()) is not None:
            raise lost
        with self.database.engine.begin() as connection:
            tasks.renew(connection, task_id, self.claim, self.services.clock())

    def _observe(self, step: str, started: float, error: BaseException | None) -> None:
        if self.on_step is not None:
            self.on_step(step, time.monotonic() - started, error)
