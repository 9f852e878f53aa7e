"""``syncd directory test``: read the directory as a pass would (the read and its timing are
:func:`syncd.directory.probe.probe_directory`'s)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from syncd.cli.common import format_option, now
from syncd.errors import EXIT_FAILURES, EXIT_OK
from syncd.output import render_table, to_json

if TYPE_CHECKING:
    from syncd.config import Config

_DIRECTORY_USER_COLUMNS = [
    ("email", "user"),
    ("directory_id", "directory id"),
    ("enabled", "enabled"),
]


def cmd_directory_test(args: argparse.Namespace, config: Config) -> int:
    """Read the directory as a pass would; print the count in scope, some users, the time."""
    from syncd.directory import open_source
    from syncd.directory.probe import probe_directory

    probe = probe_directory(open_source(config.directory, config.google), now(), args.user)
    users, snapshot = probe.users, probe.snapshot
    shown = [asdict(user) for user in users[: args.limit]]
    record: dict[str, Any] = {
        "source": probe.source,
        "users_in_scope": len(users),
        "enabled": probe.enabled,
        "disabled": len(users) - probe.enabled,
        "read_seconds": round(probe.seconds, 3),
        "users": shown,
        "skipped": [asdict(skip) for skip in snapshot.skipped],
    }
    if args.user:
        record["address_used"] = users[0].email if users else None
    if args.format == "json":
        print(to_json({"directory_test": record}))
    else:
        print(
            f"source {probe.source}: {len(users)} user(s) in scope ({probe.enabled} enabled, "
            f"{len(users) - probe.enabled} disabled), read in {probe.seconds:.2f}s"
        )
        print(render_table(shown, _DIRECTORY_USER_COLUMNS))
        if len(users) > args.limit:
            print(f"... and {len(users) - args.limit} more")
        for skip in snapshot.skipped:
            print(f"skipped: {skip.where}: {skip.reason}")
        for email in probe.other_addresses:
            print(f"{probe.wanted} is another address of this entry: syncd uses {email}")
    if args.user and not users:
        print(f"{args.user} is not in scope", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    directory_cmd = commands.add_parser("directory", help="directory source commands")
    directory_sub = directory_cmd.add_subparsers(
        dest="directory_command", metavar="ACTION", required=True
    )
    directory_test = directory_sub.add_parser(
        "test", help="read the directory: users in scope, the first few, skipped entries, time"
    )
    directory_test.add_argument("--limit", type=int, default=10, help="users to list (10)")
    directory_test.add_argument("--user", metavar="EMAIL", help="look up one user only")
    format_option(directory_test)
    directory_test.set_defaults(handler=cmd_directory_test)
