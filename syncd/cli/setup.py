"""``syncd init``, ``syncd config check`` and ``syncd db upgrade|status``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from syncd.cli.common import format_option
from syncd.errors import EXIT_OK, EXIT_USAGE, SyncdError
from syncd.output import emit_record

if TYPE_CHECKING:
    from syncd.config import Config


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.setup import initialise

    lines = initialise(config, generate_kacls_key=args.generate_kacls_key)
    if args.format == "json":
        emit_record("init", {"steps": list(lines)}, "json")
        return EXIT_OK
    for line in lines:
        print(line)
    return EXIT_OK


def _configuration_warnings(config: Config) -> list[str]:
    """Advice that does not make the configuration invalid (``config check`` exits 0)."""
    from syncd.pki.profile import LeafProfile, crl_warnings

    try:
        profile = LeafProfile.from_config(config.certificate)
    except SyncdError:
        return []  # an unreadable extensions file is the first pass's error to report
    return crl_warnings(profile, config.certificate.extensions_file)


def cmd_config_check(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.setup import check_configuration, problems_exit_code
    from syncd.config import redacted_summary

    found = check_configuration(config)
    problems = [str(problem) for problem in found]
    warnings = _configuration_warnings(config)
    summary = redacted_summary(config)
    if args.format == "json":
        record = {"valid": not problems, "problems": problems, "warnings": warnings}
        emit_record("config", {**record, "settings": summary}, "json")
    else:
        print(f"configuration: {config.source_path}")
        print(json.dumps(summary, indent=2))
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print("configuration is valid" if not problems else f"{len(problems)} problem(s) found")
    return EXIT_OK if not problems else problems_exit_code(found)


def cmd_config_schema(args: argparse.Namespace, config: object) -> int:
    from syncd.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, config: Config) -> int:
    from syncd.state.db import Database, schema_status

    database = Database.open(config.state.url, require_current=False)
    applied = database.upgrade()
    current, head = schema_status(database.engine)
    if args.format == "json":
        record = {"applied": list(applied), "revision": current, "head": head}
        emit_record("database", {**record, "current": current == head}, "json")
        return EXIT_OK
    print(f"applied {', '.join(applied)}" if applied else "already up to date")
    print(f"schema revision: {current} (head {head})")
    return EXIT_OK


def cmd_db_status(args: argparse.Namespace, config: Config) -> int:
    from syncd.state.db import Database, schema_status

    database = Database.open(config.state.url, require_current=False)
    current, head = schema_status(database.engine)
    record = {
        "url": database.display_url,
        "revision": current,
        "head": head,
        "current": current == head,
    }
    emit_record("database", record, args.format)
    return EXIT_OK if current == head else EXIT_USAGE


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser("init", help="create the master key and the state database")
    init.add_argument(
        "--generate-kacls-key",
        action="store_true",
        help="also create kacls.wrapping_key_file (only for a sandbox or a new KACLS)",
    )
    format_option(init)
    init.set_defaults(handler=cmd_init)

    config_cmd = commands.add_parser("config", help="configuration commands")
    config_sub = config_cmd.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate and print a redacted summary")
    format_option(check)
    check.set_defaults(handler=cmd_config_check)
    schema = config_sub.add_parser(
        "schema", help="print the configuration file's JSON Schema (draft 2020-12)"
    )
    schema.set_defaults(handler=cmd_config_schema, needs_config=False)

    db = commands.add_parser("db", help="state store commands")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply schema migrations")
    format_option(upgrade)
    upgrade.set_defaults(handler=cmd_db_upgrade)
    status = db_sub.add_parser("status", help="show the schema revision")
    format_option(status)
    status.set_defaults(handler=cmd_db_status)
