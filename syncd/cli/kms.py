"""``syncd kms test``: prove each KMS capability on a throwaway key (the probe is
:mod:`syncd.app.kms_probe`'s; this renders its report)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from syncd.cli.common import format_option
from syncd.errors import EXIT_FAILURES, EXIT_OK
from syncd.output import render_table, to_json

if TYPE_CHECKING:
    from syncd.config import Config

_KMS_TEST_COLUMNS = [
    ("operation", "operation"),
    ("result", "result"),
    ("milliseconds", "ms"),
    ("detail", "detail"),
]


def cmd_kms_test(args: argparse.Namespace, config: Config) -> int:
    """Prove each KMS capability on a throwaway key; a table of operation, result, time."""
    from syncd.app.context import App
    from syncd.app.kms_probe import ProbeSettings, describe_wrapping, run_probe
    from syncd.credentials.issuers import IssuingCA, load_issuer
    from syncd.errors import CANotImportedError
    from syncd.kms import KeyManager, Keyring
    from syncd.kms.kacls import load_wrapping_key

    with App(config) as app:
        kacls = config.kacls
        configured = kacls.wrapping_key is not None
        wrapping_key = load_wrapping_key(kacls) if configured else None
        issuer: IssuingCA | None
        try:
            issuer = load_issuer(app.database.sessions, config.ca.label)
        except CANotImportedError:
            issuer = None
        keyrings: list[Keyring] = []

        def connect() -> KeyManager:
            keyrings.append(app.keyring())
            return keyrings[0].configured

        settings = ProbeSettings(
            key_format=kacls.private_key_format,
            kms_key_id=kacls.kms_key_id,
            wrapping_key=wrapping_key,
            issuer=issuer,
            issuer_label=config.ca.label,
            hash_name=config.certificate.hash,
        )
        try:
            report = run_probe(connect, lambda name: keyrings[0].holding(name), settings)
        finally:
            for keyring in keyrings:
                keyring.close()
        rows = [row.as_dict() for row in report.rows]
        if args.format == "json":
            document = {
                "backend": report.backend,
                "kms": report.kms,
                "ok": report.ok,
                "wrapping": report.wrapping,
                "signing": report.signing,
                "operations": rows,
            }
            print(to_json({"kms_test": document}))
        else:
            print(f"backend {config.kms.backend}: {report.kms}")
            print(render_table(rows, _KMS_TEST_COLUMNS))
            if report.wrapping is not None:
                wrapping = describe_wrapping(report.wrapping, kacls.kms_key_id)
                signing = "Sign over the to-be-signed bytes"
                if report.signing == "certify":
                    signing = "KMIP Certify"
                print(f"kaclsData: {wrapping}; certificates: {signing}")
        for row in report.failures:
            print(f"syncd: kms test: {row.operation}: {row.detail}", file=sys.stderr)
        return EXIT_OK if report.ok else EXIT_FAILURES


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kms_cmd = commands.add_parser("kms", help="KMS commands")
    kms_sub = kms_cmd.add_subparsers(dest="kms_command", metavar="ACTION", required=True)
    kms_test = kms_sub.add_parser(
        "test",
        help="connect to the KMS and prove each operation on a throwaway key (create, sign, "
        "wrap, unwrap, the issuer key, revoke, destroy)",
    )
    format_option(kms_test)
    kms_test.set_defaults(handler=cmd_kms_test)
