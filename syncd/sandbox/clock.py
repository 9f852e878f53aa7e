"""The sandbox clock: real time plus an offset that tests move forward, kept across restarts.

It dates Gmail's state (``disableTime``, the 30-day obliterate rule, certificate validity).
Token lifetimes follow real time, so moving the clock never invalidates a client's tokens.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from syncd.sandbox.store import Store


class Clock:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._offset = store.clock_offset()

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds
            self._store.save_clock_offset(self._offset)
        return self.now()


def rfc3339(moment: datetime) -> str:
    """Google's timestamp format: UTC, ``Z`` suffix, microseconds only when present."""
    text = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
