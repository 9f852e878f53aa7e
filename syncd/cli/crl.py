"""``syncd crl`` (write the issuing CA's revocation list) and ``syncd revoke`` (revoke a user's
certificates)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.cli.common import format_option, now
from syncd.domain import USER_REVOCATION_REASONS
from syncd.errors import EXIT_OK, EXIT_USAGE, ConfigError
from syncd.output import emit_record

if TYPE_CHECKING:
    from syncd.config import Config

REASON_CHOICES = USER_REVOCATION_REASONS
"""The reasons for the help; check_reason refuses any other, naming these."""


def cmd_crl(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.app.crl import make_crl, write_crl

    fmt = args.crl_format or config.crl.format
    to_stdout = args.output == "-" or (args.output is None and config.crl.output is None)
    if args.output is None and not to_stdout and fmt != config.crl.format:
        raise ConfigError("--format", f"crl.output is published as {config.crl.format} "
                          f"(crl.format); give --output FILE for a {fmt} copy")
    if to_stdout and fmt == "der" and sys.stdout.isatty():
        print("syncd: refusing to write a DER CRL to a terminal; use --output FILE or "
              "--format pem", file=sys.stderr)
        return EXIT_USAGE
    with App(config) as app, app.run_lock() as fence:
        if to_stdout:
            written = make_crl(app, args.issuer, fmt, fence=fence, now=now())
        else:
            output = Path(args.output) if args.output else None
            written = write_crl(app, args.issuer, output, fmt, fence=fence, now=now())
    if written.path is None:
        sys.stdout.buffer.write(written.data)
        sys.stdout.flush()
        return EXIT_OK
    print(
        f"wrote CRL number {written.number} of issuing CA {written.issuer_label!r} to "
        f"{written.path} ({fmt}, {written.entries} revoked, next update "
        f"{written.next_update:%Y-%m-%d %H:%M}Z)"
    )
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.app.crl import check_reason, revoke_user

    reason = check_reason(args.reason)
    with App(config) as app, app.run_lock() as fence:
        result = revoke_user(app, args.user, reason, fence=fence, now=now())
    if args.format == "json":
        emit_record("revocation", result.describe(), "json")
        return EXIT_OK
    for line in result.lines():
        print(line)
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crl = commands.add_parser(
        "crl",
        help="write the issuing CA's certificate revocation list, signed in the KMS",
        description="Write the CRL of an issuing CA: every serial revoked on deprovisioning, "
        "replacement and by `syncd revoke`, signed by the issuer's key in the KMS. Without "
        "--output it goes to crl.output (published now, in crl.format), else to standard "
        "output (also --output -).",
    )
    crl.add_argument(
        "--output", metavar="FILE", help="write here (-: standard output; default: crl.output)"
    )
    crl.add_argument(
        "--format", dest="crl_format", choices=["der", "pem"], default=None,
        help="encoding (default: crl.format, der)",
    )  # fmt: skip
    crl.add_argument("--issuer", metavar="LABEL", help="the issuing CA (default: ca.label)")
    crl.set_defaults(handler=cmd_crl)

    revoke = commands.add_parser(
        "revoke",
        help="revoke a user's certificates (listed in the next CRL)",
        description="Record the revocation of the user's active and superseded certificates; "
        "the CRL lists them from its next writing (each pass refreshes crl.output). A user "
        "who keeps a credential (any reason but cessationOfOperation and privilegeWithdrawn) "
        "gets a fresh one at the next pass.",
    )
    revoke.add_argument("--user", required=True, metavar="EMAIL", help="the user's address")
    revoke.add_argument(
        "--reason", required=True, metavar="REASON",
        help=f"RFC 5280 revocation reason: {', '.join(REASON_CHOICES)}",
    )  # fmt: skip
    format_option(revoke)
    revoke.set_defaults(handler=cmd_revoke)
