"""``syncd report``: coverage, failures, expiring certificates, changes and passes (the
report is :mod:`syncd.report`'s; it has its own formats: table, csv, json, html)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.cli.common import now
from syncd.errors import EXIT_FAILURES, EXIT_OK, ConfigError

if TYPE_CHECKING:
    from syncd.config import Config


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    """Coverage, failures, expiring certificates, changes and passes; --fail-on sets exit 1."""
    from syncd.app.context import App
    from syncd.report.service import ReportOptions, produce_report
    from syncd.report.thresholds import parse_condition

    conditions = [parse_condition(text) for text in args.fail_on]
    if args.expiring_days is not None and args.expiring_days < 1:
        raise ConfigError("--expiring-days", "must be 1 or more")
    if args.since_days is not None and args.since_days < 0:
        raise ConfigError("--since-days", "must be 0 or more")
    output = None if args.output in (None, "-") else Path(args.output)
    if args.output is None and config.report.output is not None:
        output = config.report.output
    options = ReportOptions(
        fmt=args.format,
        output=output,
        expiring_days=args.expiring_days,
        since_days=args.since_days,
        fail_on=conditions,
        record=not args.no_record,
        email=not args.no_email,
    )
    with App(config) as app:
        result = produce_report(config, app.database, options, now())
    for check in result.alerts:
        print(f"syncd: fail-on {check.reason}", file=sys.stderr)
    if result.mail_error is not None:
        print(f"syncd: the report was not emailed: {result.mail_error}", file=sys.stderr)
    return EXIT_FAILURES if result.alerts or result.mail_error else EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report_cmd = commands.add_parser(
        "report", help="coverage, failures, expiring certificates, changes, last passes"
    )
    report_cmd.add_argument(
        "--format",
        choices=["table", "csv", "json", "html"],
        default=None,
        help="output format (default: from the --output suffix .html/.json/.csv, else table)",
    )
    report_cmd.add_argument(
        "--output",
        metavar="FILE",
        help="write here (default: report.output, else stdout; - is stdout)",
    )
    report_cmd.add_argument(
        "--expiring-days",
        type=int,
        metavar="N",
        help="expiry window in days (default: report.expiring_days)",
    )
    report_cmd.add_argument(
        "--since-days",
        type=int,
        metavar="N",
        help="changes of the last N days (default: since the previous report)",
    )
    report_cmd.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="COND",
        help="exit 1 when METRIC OP NUMBER holds (failures>0, coverage<99, expiring>0, pending>0)",
    )
    report_cmd.add_argument(
        "--no-record", action="store_true", help="do not record this report as the previous one"
    )
    report_cmd.add_argument("--no-email", action="store_true", help="do not send report.email")
    report_cmd.set_defaults(handler=cmd_report)
