"""Whether the daemon's running pass makes progress (the watchdog and daemon.stall_timeout)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class PassProgress:
    """Whether the running pass (if any) makes progress: a step or a task finished lately.

    Written by the pass's threads (:meth:`started`, :meth:`advanced`, :meth:`ended`), read by
    the main loop before each watchdog ping (:meth:`stalled_for`).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._running = False
        self._last = clock()

    def started(self) -> None:
        with self._lock:
            self._running, self._last = True, self._clock()

    def advanced(self) -> None:
        with self._lock:
            self._last = self._clock()

    def ended(self) -> None:
        with self._lock:
            self._running, self._last = False, self._clock()

    def stalled_for(self, limit: float) -> float | None:
        """Seconds since the running pass last made progress, if more than ``limit``."""
        with self._lock:
            quiet = self._clock() - self._last
            return quiet if self._running and quiet > limit else None
