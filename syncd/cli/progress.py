"""Progress of a long pass: a tqdm bar on a terminal, nothing extra otherwise (the log has
lines).

While the bar is shown, syncd's log handler writes through :func:`tqdm.tqdm.write`, which
clears the bar, prints the log line and draws the bar again below it: the two share stderr
without a log line landing in the middle of the bar.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.pipeline.runner import TaskResult

BAR_FORMAT = "[{bar:30}] {n_fmt}/{total_fmt} users{postfix} [{elapsed}<{remaining}]"


class _AboveTheBar:
    """A stream for a log handler: each write goes above the bars drawn on ``stream``."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


class ProgressBar:
    """``with ProgressBar() as bar: bar.start(total); ... bar.advance(result)``."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.failed = 0
        self._bar: Any = None
        self._lock = threading.Lock()
        self._swapped: list[tuple[logging.StreamHandler[Any], IO[str]]] = []

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def start(self, total: int) -> None:
        """Show a bar for ``total`` users when there are some and the stream is a terminal."""
        self.total = total
        if total <= 0 or not self.stream.isatty():
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            file=self.stream,
            bar_format=BAR_FORMAT,
            ascii=".#",
            dynamic_ncols=True,
            postfix="0 failed",
        )
        self._route_logs_above()

    def advance(self, result: TaskResult) -> None:
        with self._lock:
            self.done += 1
            self.failed += 0 if result.ok else 1
            if self._bar is not None:
                if not result.ok:
                    self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
                self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        for handler, stream in self._swapped:
            handler.setStream(stream)
        self._swapped.clear()

    def _route_logs_above(self) -> None:
        """Send every log handler writing to the bar's stream through :class:`_AboveTheBar`."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                self._swapped.append((handler, handler.stream))
                handler.setStream(_AboveTheBar(self.stream))

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
