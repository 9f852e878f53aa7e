"""Deliberate crash points for the crash-safety tests.

``SYNCD_CRASH_AT=after:upload_keypair:3`` makes the process kill itself with SIGKILL the third
time it reaches that point (``before:<step>``, ``after:<step>`` = the external call is done but
nothing is recorded, ``committed:<step>``). Unset, as in production, a crash point does nothing
but one dictionary look-up.
"""

from __future__ import annotations

import os
import signal
import threading

ENV_VAR = "SYNCD_CRASH_AT"


def _parse(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, count = value.rpartition(":")
    if point and count.isdigit():
        return point, int(count)
    return value, 1


_TARGET = _parse(os.environ.get(ENV_VAR, ""))
_seen: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    if _TARGET is None or _TARGET[0] != name:
        return
    with _lock:
        _seen[name] = _seen.get(name, 0) + 1
        if _seen[name] >= _TARGET[1]:
            os.kill(os.getpid(), signal.SIGKILL)
