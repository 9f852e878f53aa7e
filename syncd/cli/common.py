"""What every command module shares: the ``--format`` and logging options, reading a password
or an input file, and turning a failed file operation into syncd's one-line error.

Nothing here imports a heavy library: ``syncd --version`` and ``--help`` load only this, the
command modules and the standard library.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from syncd.errors import ConfigError, SyncdError, UnavailableError
from syncd.logs import LEVELS, LogFormat, LogOverrides

if TYPE_CHECKING:
    from syncd.config import Config

Handler = Callable[[argparse.Namespace, "Config"], int]


def now() -> datetime:
    return datetime.now(UTC)


def format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output format"
    )


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --- logging options, accepted before and after every (sub)command --------------------------

_VERBOSE, _QUIET, _LEVEL, _FORMAT = "log_verbose_", "log_quiet_", "log_level_", "log_format_"


def add_logging_options(parser: argparse.ArgumentParser, depth: int) -> None:
    """``-v``/``-q``/``--log-level``/``--log-format`` on ``parser``, stored under dests of its
    own ``depth`` (argparse gives each sub-command a fresh namespace and copies it over the
    parent's, so one dest shared by two levels would lose the outer value)."""
    group = parser.add_argument_group("logging options")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest=f"{_VERBOSE}{depth}",
        default=argparse.SUPPRESS,
        help="log more: one level below logging.level per -v (INFO -> DEBUG)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        dest=f"{_QUIET}{depth}",
        default=argparse.SUPPRESS,
        help="log less: one level above logging.level per -q (INFO -> WARNING -> ERROR)",
    )
    group.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        dest=f"{_LEVEL}{depth}",
        default=argparse.SUPPRESS,
        help="log at this level (instead of logging.level; wins over -v/-q)",
    )
    group.add_argument(
        "--log-format",
        choices=get_args(LogFormat),
        dest=f"{_FORMAT}{depth}",
        default=argparse.SUPPRESS,
        help="log line format (instead of logging.format)",
    )


def add_logging_options_everywhere(parser: argparse.ArgumentParser, depth: int = 0) -> None:
    """The logging options on ``parser`` and on every sub-command below it."""
    add_logging_options(parser, depth)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                add_logging_options_everywhere(sub, depth + 1)


def _by_depth(args: argparse.Namespace, prefix: str) -> list[Any]:
    found = [(int(k[len(prefix):]), v) for k, v in vars(args).items() if k.startswith(prefix)]
    return [value for _, value in sorted(found)]


def log_overrides(args: argparse.Namespace) -> LogOverrides:
    """What the logging options of every level ask for; the innermost level and format win."""
    levels, formats = _by_depth(args, _LEVEL), _by_depth(args, _FORMAT)
    steps = sum(_by_depth(args, _QUIET)) - sum(_by_depth(args, _VERBOSE))
    return LogOverrides(
        level=levels[-1] if levels else None,
        fmt=formats[-1] if formats else None,
        steps=steps,
    )


# --- input ----------------------------------------------------------------------------------


def read_password(args: argparse.Namespace) -> bytes | None:
    """A PKCS#12 password from --password-file or --password-env, never from argv."""
    if args.password_file:
        try:
            return Path(args.password_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                "--password-file", f"cannot read {args.password_file}: {exc.strerror}"
            ) from None
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise ConfigError(
                "--password-env", f"environment variable {args.password_env} is not set"
            )
        return value.encode()
    return None


def read_input_file(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(option, f"cannot read {path}: {exc.strerror}") from None


def optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


# --- errors ---------------------------------------------------------------------------------

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def os_error(error: OSError) -> SyncdError:
    """The one-line error for a file operation that failed outside syncd's own checks."""
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error)
    if error.errno in _NO_SPACE:
        return UnavailableError(f"{where}{reason}: free space on that file system")
    return ConfigError("", f"{where}{reason}")
