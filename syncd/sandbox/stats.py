"""Request counts by Google method name, answer status and injected fault.

Tests read them (``GET /sandbox/v1/stats``) to assert, for example, that a dry run made no
Gmail write.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._answers: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._faults: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def request(self, method: str) -> None:
        with self._lock:
            self._requests[method] += 1

    def answer(self, method: str, status: int) -> None:
        with self._lock:
            self._answers[method][str(status)] += 1

    def fault(self, method: str, fault: str) -> None:
        with self._lock:
            self._faults[method][fault] += 1

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._answers.clear()
            self._faults.clear()

    def snapshot(self) -> dict[str, Any]:
        """``{"methods": {name: {"requests", "answers": {status: n}, "faults": {...}}}}``."""
        with self._lock:
            return {
                "methods": {
                    name: {
                        "requests": count,
                        "answers": dict(self._answers.get(name, {})),
                        "faults": dict(self._faults.get(name, {})),
                    }
                    for name, count in sorted(self._requests.items())
                }
            }
