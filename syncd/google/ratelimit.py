"""A client-side request rate limit shared by every thread of a client.

Generic cell rate: calls are due ``1/rate`` apart; a caller sleeps (outside the lock) until
its call is due, less the ``burst - 1`` intervals of slack, so up to ``burst`` calls may go
at once after an idle spell.

In a shared group (``state.shared``) the rate is the group's: ``divide_among`` gives each
instance its share, rate and burst divided by the number of live instances (re-read at every
call, so a member joining or leaving changes the shares within one heartbeat; a member that
joins waits that heartbeat before its first call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        per_second: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be more than zero")
        self._interval = 1.0 / per_second
        self._burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = clock()
        self._group_size: Callable[[], int] = lambda: 1
        self._starting: Callable[[], float] = lambda: 0.0

    def divide_among(
        self, group_size: Callable[[], int], starting: Callable[[], float] = lambda: 0.0
    ) -> None:
        """Keep to a 1/``group_size()`` share of the rate (the instances of a shared group),
        and make no call before ``starting()`` (on this limiter's clock): a member joining a
        group waits until the others have taken their smaller shares."""
        self._group_size = group_size
        self._starting = starting

    def acquire(self) -> float:
        """Wait for this call's slot; returns the seconds waited."""
        members = max(1, self._group_size())
        interval = self._interval * members
        burst = max(1, self._burst // members)
        starting = self._starting()
        with self._lock:
            now = self._clock()
            due = max(self._next, now, starting)
            self._next = due + interval
        wait = max(due - now - (burst - 1) * interval, starting - now)
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0
