"""Progress of a long pass: a bar on a terminal, nothing extra otherwise (the log has lines)."""

from __future__ import annotations

import sys
import threading
from typing import IO

from syncd.pipeline.runner import TaskResult

BAR_WIDTH = 30


class ProgressBar:
    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = total > 0 and self.stream.isatty()
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()

    def advance(self, result: TaskResult) -> None:
        with self._lock:
            self.done += 1
            self.failed += 0 if result.ok else 1
            if not self.enabled:
                return
            filled = BAR_WIDTH * self.done // self.total
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            end = "\n" if self.done == self.total else ""
            self.stream.write(
                f"\r[{bar}] {self.done}/{self.total} users, {self.failed} failed{end}"
            )
            self.stream.flush()
