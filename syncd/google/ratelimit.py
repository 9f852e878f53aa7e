"""A client-side request rate limit shared by every thread of a client.

Generic cell rate: calls are due ``1/rate`` apart; a caller sleeps (outside the lock) until
its call is due, less the ``burst - 1`` intervals of slack, so up to ``burst`` calls may go
at once after an idle spell.
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

    def acquire(self) -> float:
        """Wait for this call's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            due = max(self._next, now)
            self._next = due + self._interval
        wait = due - now - (self._burst - 1) * self._interval
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0
