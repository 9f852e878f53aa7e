"""``syncd run`` (the service) and ``syncd health`` (its check for monitoring)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from syncd.cli.common import format_option, now
from syncd.errors import EXIT_FAILURES, EXIT_OK
from syncd.output import to_json

if TYPE_CHECKING:
    from syncd.config import Config


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from syncd.service.daemon import run

    return run(config)


def cmd_health(args: argparse.Namespace, config: Config) -> int:
    from syncd.service.health import check_health

    health = check_health(config, now())
    if args.format == "json":
        print(to_json(health.to_dict()))
    else:
        for check in health.checks:
            print(f"{'ok' if check.ok else 'FAIL':<4} {check.name}: {check.detail}")
        print("healthy" if health.ok else "unhealthy")
    return EXIT_OK if health.ok else EXIT_FAILURES


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_cmd = commands.add_parser(
        "run", help="the service: scheduled passes until SIGTERM (SIGHUP reloads)"
    )
    run_cmd.set_defaults(handler=cmd_run)

    health_cmd = commands.add_parser(
        "health", help="exit 0 if the database is reachable and the last pass recent and sound"
    )
    format_option(health_cmd)
    health_cmd.set_defaults(handler=cmd_health)
