"""A small pool of open connections shared by the pipeline's worker threads.

Each operation borrows one connection for itself (a KMIP connection carries one request at a
time), so threads run in parallel up to the number of connections; a connection that failed is
closed instead of returned, and the next borrower opens a fresh one. Idle connections beyond
``max_idle`` are closed, so the pool holds about as many as there are threads using it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class ConnectionPool(Generic[T]):
    """Borrow with ``with pool.connection() as conn``; an error inside discards ``conn`` unless
    ``survives(error)`` (the server answered and refused: the connection is still good)."""

    def __init__(
        self,
        open_connection: Callable[[], T],
        close_connection: Callable[[T], None],
        is_stale: Callable[[T], bool],
        survives: Callable[[BaseException], bool] = lambda error: False,
        max_idle: int = 16,
    ) -> None:
        self._open = open_connection
        self._close = close_connection
        self._is_stale = is_stale
        self._survives = survives
        self._max_idle = max_idle
        self._idle: list[T] = []
        self._lock = threading.Lock()
        self._closed = False
        self.opened = 0
        """How many connections were opened (for tests and ``kms test``)."""
        self.busy = 0
        self.peak_busy = 0
        """Connections lent at once, now and at most: how parallel the callers really ran."""

    def _take_idle(self) -> T | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()  # LIFO: the most recently used is the likeliest alive
            if not self._is_stale(conn):
                return conn
            self._safe_close(conn)

    def _safe_close(self, conn: T) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection may fail
            self._close(conn)

    @contextmanager
    def connection(self) -> Iterator[T]:
        conn = self._take_idle()
        if conn is None:
            conn = self._open()  # outside the lock: a slow connect must not block others
            with self._lock:
                self.opened += 1
        with self._lock:
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)
        try:
            yield conn
        except BaseException as error:
            if not self._survives(error):
                with self._lock:
                    self.busy -= 1
                self._safe_close(conn)
                raise
            self._give_back(conn)
            raise
        self._give_back(conn)

    def _give_back(self, conn: T) -> None:
        with self._lock:
            self.busy -= 1
            keep = not self._closed and len(self._idle) < self._max_idle
            if keep:
                self._idle.append(conn)
        if not keep:
            self._safe_close(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for conn in idle:
            self._safe_close(conn)
