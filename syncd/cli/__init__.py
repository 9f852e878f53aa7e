"""The ``syncd`` command line: argument parsing, output formats and exit codes.

No business logic lives here: each command opens what it needs through :class:`syncd.app.App`
and calls the module that owns the work. One module per command group registers its
sub-commands next to their handlers; this one builds the parser from them and runs a command.
Exit codes (docs/cli.md): 0 success, 1 finished with per-user failures, 2 usage or
configuration error, 3 another run holds the lock, 4 a dependency is unavailable (database down
or unreachable, disk full): try again later.

:func:`main` is the one place where errors become exit codes: syncd's own errors carry theirs,
and database driver errors and full disks are mapped here once, for every command.

Start-up stays light: building the parser imports no heavy library (SQLAlchemy, pydantic,
cryptography, the Google client, ldap3, PyKMIP); each handler imports what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from syncd import __version__
from syncd.cli import ca, crl, directory, google, kms, report, sandbox, service, setup, sync
from syncd.cli.common import Handler, add_logging_options_everywhere, log_overrides, os_error
from syncd.errors import SyncdError
from syncd.logs import LogOverrides, set_overrides, setup_logging
from syncd.output import Format

if TYPE_CHECKING:
    from syncd.config import Config

_GROUPS = (setup, ca, crl, sync, sandbox, google, service, directory, report, kms)
"""Command modules, in the order their commands are listed by ``syncd --help``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Provision Gmail client-side encryption S/MIME credentials for a directory.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration file (default: $SYNCD_CONFIG, else /etc/syncd/syncd.yaml)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in _GROUPS:
        group.register(commands)
    add_logging_options_everywhere(parser)
    return parser


def _dbapi_error(error: BaseException) -> bool:
    """A database driver error (SQLAlchemy's DBAPIError), without importing SQLAlchemy: when a
    command never loaded it, the error cannot be one."""
    exc_module = sys.modules.get("sqlalchemy.exc")
    dbapi = getattr(exc_module, "DBAPIError", None)
    return dbapi is not None and isinstance(error, dbapi)


def _run(args: argparse.Namespace) -> int:
    setup_logging("WARNING", "auto")
    config: Config | None = None
    try:
        try:
            if not getattr(args, "needs_config", True):
                return int(args.handler(args, None))
            from syncd.config import default_config_path, load_config

            config = load_config(args.config or default_config_path())
            setup_logging(config.logging.level, config.logging.format)
            handler: Handler = args.handler
            return handler(args, config)
        except OSError as error:
            raise os_error(error) from None
        except Exception as error:
            if not _dbapi_error(error):
                raise
            from syncd.state.db import database_error

            url = config.state.url if config is not None else "sqlite://"
            raise database_error(error, url) from None  # type: ignore[arg-type]
    except SyncdError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_overrides(log_overrides(args))
    try:
        return _run(args)
    finally:
        set_overrides(LogOverrides())


__all__ = ["Format", "build_parser", "main", "os_error"]
