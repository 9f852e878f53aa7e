"""The pipeline runner: runs tasks with a bounded pool of workers, one task per user.

Each task walks its steps from its checkpoint. A transient failure (Google 429/5xx, a dropped
connection) is retried inside the task with backoff; a task that keeps failing, or fails for
a reason retrying won't fix, is marked failed with its error and left for a later pass. One
user's failure never stops the others.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from syncd.config import PipelineConfig
from syncd.google.errors import GoogleAPIError
from syncd.pipeline import tasks
from syncd.pipeline.crashpoints import crash_point
from syncd.pipeline.steps import STEPS, Outcome, Services
from syncd.state.db import Database

log = logging.getLogger("syncd.pipeline")

MAX_STEP_BACKOFF = 8.0


@dataclass(frozen=True)
class TaskResult:
    task_id: int
    email: str
    kind: str
    ok: bool
    failed_step: str | None = None
    error: str | None = None


def is_transient(error: BaseException) -> bool:
    if isinstance(error, GoogleAPIError):
        return error.retryable
    return isinstance(error, ConnectionError | TimeoutError)


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
        sleep: Callable[[float], None] = time.sleep,
        on_done: Callable[[TaskResult], None] | None = None,
    ) -> None:
        self.database = database
        self.services = services
        self.config = config
        self.run_id = run_id
        self.sleep = sleep
        self.on_done = on_done

    def run(self, task_ids: Sequence[int]) -> list[TaskResult]:
        if not task_ids:
            return []
        workers = min(self.config.workers, len(task_ids))
        with ThreadPoolExecutor(workers, thread_name_prefix="syncd-worker") as pool:
            return list(pool.map(self._run_isolated, task_ids))

    def _run_isolated(self, task_id: int) -> TaskResult:
        result = self._run_task(task_id)
        if self.on_done is not None:
            self.on_done(result)
        return result

    def _run_task(self, task_id: int) -> TaskResult:
        now = self.services.clock
        with self.database.transaction() as session:
            task = tasks.start(session, task_id, self.run_id)
            kind, email, step = task.kind.value, task.user.email, task.next_step
        while step is not None:
            try:
                outcome = self._attempt_step(task_id, step)
            except Exception as error:  # any failure stays with this user's task
                message = f"{step}: {error}" if str(error) else f"{step}: {error!r}"
                with self.database.transaction() as session:
                    retry_at = tasks.fail(
                        session,
                        task_id,
                        message,
                        now(),
                        self.run_id,
                        self.config.retry_initial,
                        self.config.retry_max,
                    )
                log.warning(
                    "%s %s failed at %s (retry after %s): %s",
                    kind,
                    email,
                    step,
                    f"{retry_at:%Y-%m-%d %H:%M:%S}Z",
                    error,
                )
                return TaskResult(task_id, email, kind, False, step, message)
            crash_point(f"after:{step}")
            with self.database.transaction() as session:
                following = tasks.record_step(session, task_id, step, outcome, now(), self.run_id)
            crash_point(f"committed:{step}")
            step = following
        log.info("%s %s done", kind, email)
        return TaskResult(task_id, email, kind, True)

    def _attempt_step(self, task_id: int, step: str) -> Outcome:
        attempts = self.config.step_attempts
        for attempt in range(1, attempts + 1):
            with self.database.sessions() as session:
                work = tasks.load_work(session, task_id)
            crash_point(f"before:{step}")
            try:
                return STEPS[step](work, self.services)
            except Exception as error:
                if attempt == attempts or not is_transient(error):
                    raise
                delay = step_backoff(attempt)
                log.info(
                    "%s for %s: %s; attempt %d of %d in %.1fs",
                    step,
                    work.email,
                    error,
                    attempt + 1,
                    attempts,
                    delay,
                )
                self.sleep(delay)
        raise AssertionError("unreachable")
