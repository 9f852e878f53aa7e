"""One retry budget per pipeline step, shared by whoever retries inside the step.

The runner opens a :class:`RetryBudget` around each step (``with spending(budget)``); the
Google client finds it with :func:`current_budget`, and both charge it for every retry: a
request the client sends again, a step the runner runs again. A budget holds a number of
retries and a deadline; no retry wait starts that would end after the deadline. Every wait
goes through :meth:`RetryBudget.wait`, which wakes as soon as the stop event is set and raises
:class:`StopRequested`, so a SIGTERM never waits out a backoff or a ``Retry-After``.

Outside a step (commands, directory reads) there is either no budget or one that carries only
the stop event (``retries`` None): the caller's own retry count applies.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class StopRequested(Exception):
    """The stop event was set while waiting to retry: the work stays at its checkpoint."""


@dataclass
class RetryBudget:
    retries: int | None = None
    """Retries left (None: no limit from this budget)."""
    seconds: float | None = None
    """Time allowed from the budget's start (None: no deadline)."""
    stop: threading.Event | None = None
    sleep: Callable[[float], None] = time.sleep
    """Used for waits when there is no stop event."""
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    spent: int = 0

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def counts_retries(self) -> bool:
        return self.retries is not None

    def refusal(self, delay: float) -> str | None:
        """Why one more retry after ``delay`` seconds is not allowed, or None if it is."""
        if self.retries is not None and self.spent >= self.retries:
            return f"the step's retry budget is spent ({self.retries} retries)"
        if self.seconds is not None:
            elapsed = self.clock() - self.started
            if elapsed + delay > self.seconds:
                return (
                    f"the step's time budget ({self.seconds:g}s) does not allow a wait of "
                    f"{delay:.1f}s after {elapsed:.1f}s"
                )
        return None

    def spend(self, delay: float) -> None:
        """Count one retry and wait ``delay`` seconds before it (StopRequested on stop)."""
        self.spent += 1
        self.wait(delay)

    def wait(self, delay: float) -> None:
        if self.stop is None:
            self.sleep(delay)
        elif self.stop.wait(delay):
            raise StopRequested("stop requested while waiting to retry")

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


_current: contextvars.ContextVar[RetryBudget | None] = contextvars.ContextVar(
    "syncd_retry_budget", default=None
)


def current_budget() -> RetryBudget | None:
    """The budget of the step (or pass) this thread is working for, if any."""
    return _current.get()


@contextmanager
def spending(budget: RetryBudget) -> Iterator[RetryBudget]:
    """Make ``budget`` the current one inside the block (this thread only)."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
