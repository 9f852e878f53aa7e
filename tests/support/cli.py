"""Run the ``syncd`` command line in this process, as a test would run the executable.

Starting ``python -m syncd`` costs about a second of imports per call, and the suite makes
hundreds of calls. A test that needs no process boundary of its own (no crash point, no
SIGKILL, no signal, no start-up check) runs :func:`syncd.cli.main` here instead, with what a
fresh process would have: the given environment and working directory, its own stdout and
stderr (not terminals, as with ``capture_output``), Python's default warning filters, and the
exit code a process would end with (``SystemExit`` from argparse, a traceback and 1 for an
uncaught exception). Whatever the command changed in this process is put back afterwards: the
environment, the working directory, the root logger's handlers and levels, the warning
capture, and the secrets syncd's log filter learnt.

``SYNCD_TESTS_CLI=process`` in the environment runs every such call as a process again
(``python -m syncd``), to tell whether a failure comes from running in-process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

MODE_VARIABLE = "SYNCD_TESTS_CLI"

_LOGGERS_SETUP_TOUCHES = ("", "alembic", "apscheduler", "googleapiclient", "urllib3")
"""The root logger and those whose level :func:`syncd.logs.setup_logging` sets."""


class _Output(io.TextIOWrapper):
    """A captured stdout or stderr: text over bytes (``.buffer`` for binary output), UTF-8."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", newline="\n", write_through=True)

    def text(self) -> str:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        # As subprocess's text mode reads it: universal newlines.
        return raw.getvalue().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _default_warning_filters() -> None:
    """The filters of a fresh interpreter (not pytest's): deprecations outside __main__ and
    resource warnings are ignored."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for ignored in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", ignored, append=True)


@contextlib.contextmanager
def _process_state(env: Mapping[str, str] | None, cwd: Path | None) -> Iterator[None]:
    from syncd import logs

    environ = dict(os.environ)
    folder = os.getcwd()
    loggers = [logging.getLogger(name) for name in _LOGGERS_SETUP_TOUCHES]
    levels = [logger.level for logger in loggers]
    handlers = list(logging.getLogger().handlers)
    secrets = set(logs._known)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings():
            _default_warning_filters()
            try:
                yield
            finally:
                logging.captureWarnings(False)
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environ)
        logging.getLogger().handlers[:] = handlers
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        with logs._known_lock:
            logs._known.clear()
            logs._known.update(secrets)


def _exit_code(exit: SystemExit, stderr: io.TextIOBase) -> int:
    """The status a process ends with on ``sys.exit(code)``."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=stderr)
    return 1


def run_syncd(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``syncd ARGS`` run in this process: its exit code, stdout and stderr, as
    ``subprocess.run([sys.executable, "-m", "syncd", *args], env=env, cwd=cwd,
    capture_output=True, text=True)`` returns them. ``env``: the whole environment (None:
    this process's)."""
    if os.environ.get(MODE_VARIABLE) == "process":
        return subprocess.run(
            [sys.executable, "-m", "syncd", *args],
            env=None if env is None else dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    from syncd.cli import main

    stdout, stderr = _Output(), _Output()
    with (
        _process_state(env, cwd),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            code = main(list(args))
        except SystemExit as exit:
            code = _exit_code(exit, stderr)
        except Exception:  # what the interpreter does with an uncaught exception
            traceback.print_exc(file=stderr)
            code = 1
    return subprocess.CompletedProcess(["syncd", *args], code, stdout.text(), stderr.text())
