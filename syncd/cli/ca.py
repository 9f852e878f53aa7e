"""``syncd ca import|show`` and ``syncd cert issue``: the issuing CA and debugging leaves."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.cli.common import format_option, now, read_input_file, read_password
from syncd.errors import EXIT_OK, ConfigError
from syncd.output import emit_listing, emit_record

if TYPE_CHECKING:
    from syncd.config import Config


def _ca_import_source(args: argparse.Namespace) -> None:
    """A PKCS#12 file, or --kms-private-key-id with --chain: exactly one of the two."""
    if args.kms_private_key_id is None:
        if args.pkcs12 is None:
            raise ConfigError(
                "ca import",
                "give the issuer's PKCS12 file, or --kms-private-key-id ID --chain PEM for an "
                "issuer whose key is already in the KMS",
            )
        return
    if args.pkcs12 is not None:
        raise ConfigError(
            "--kms-private-key-id",
            f"cannot be used with a PKCS12 file ({args.pkcs12}): the key is either imported "
            "from the file or already in the KMS",
        )
    if args.chain is None:
        raise ConfigError(
            "--kms-private-key-id", "needs --chain PEM: the issuer certificate and its chain"
        )
    if args.password_file or args.password_env:
        raise ConfigError("--kms-private-key-id", "takes no PKCS#12 password")


def cmd_ca_import(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.credentials.issuers import adopt_issuer, import_issuer

    _ca_import_source(args)
    with App(config) as app:
        label = args.label or config.ca.label
        with app.run_lock():
            kms = app.key_manager()
            if args.kms_private_key_id is not None:
                issuer, warnings = adopt_issuer(
                    app.database.sessions,
                    kms,
                    label=label,
                    private_key_id=args.kms_private_key_id,
                    chain_pem=read_input_file(args.chain, "--chain"),
                    now=now(),
                    chain_where=f"--chain {args.chain}",
                    replace=args.replace,
                )
            else:
                issuer, warnings = import_issuer(
                    app.database.sessions,
                    kms,
                    label=label,
                    pkcs12_data=read_input_file(args.pkcs12, "PKCS12"),
                    password=read_password(args),
                    extra_chain_pem=read_input_file(args.chain, "--chain") if args.chain else None,
                    now=now(),
                    where=args.pkcs12,
                    replace=args.replace,
                    chain_where=f"--chain {args.chain}",
                )
            app.audit(
                "ca.imported",
                label=issuer.label,
                sha256=issuer.describe()["sha256_fingerprint"],
                kms_backend=issuer.kms_backend,
                kms_key_id=issuer.kms_private_key_id,
                adopted=args.kms_private_key_id is not None,
            )
        how = "adopted" if args.kms_private_key_id is not None else "imported"
        if args.format == "json":
            record = {**issuer.describe(), "action": how, "warnings": list(warnings)}
            emit_record("issuer", record, "json")
            return EXIT_OK
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(
            f"{how} issuing CA {issuer.label!r}: {issuer.certificate.subject.rfc4514_string()} "
            f"(key {issuer.kms_private_key_id} in the {issuer.kms_backend} KMS)"
        )
        return EXIT_OK


_ISSUER_LABELS = [
    ("label", "label"),
    ("subject", "subject"),
    ("issuer", "issued by"),
    ("serial", "serial"),
    ("sha256_fingerprint", "SHA-256"),
    ("not_before", "valid from"),
    ("not_after", "valid until"),
    ("kms_private_key_id", "KMS key id"),
    ("kms_backend", "KMS backend"),
    ("chain", "chain above"),
]


def cmd_ca_show(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.credentials.issuers import list_issuers

    with App(config) as app:
        issuers = [issuer.describe() for issuer in list_issuers(app.database.sessions)]
        if args.format == "json":
            emit_listing("issuers", issuers, [], "json")
            return EXIT_OK
        if not issuers:
            print("no issuing CA imported; run `syncd ca import ISSUER.p12`")
        for number, issuer in enumerate(issuers):
            if number:
                print()
            chain = [link["subject"] for link in issuer["chain"]]
            emit_record("issuer", {**issuer, "chain": chain}, "table", _ISSUER_LABELS)
        return EXIT_OK


def cmd_cert_issue(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.app.debug_cert import write_debug_credential

    with App(config) as app:
        with app.run_lock():
            paths = write_debug_credential(
                app, args.email, Path(args.out), bits=args.rsa_bits, now=now()
            )
        if args.format == "json":
            emit_record("cert", {"email": args.email, "files": [str(p) for p in paths]}, "json")
            return EXIT_OK
        for path in paths:
            print(f"wrote {path}")
        return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = commands.add_parser("ca", help="issuing CA commands")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    ca_import = ca_sub.add_parser(
        "import",
        help="import the issuing CA from PKCS#12 (its key into the KMS), or adopt one whose "
        "key is already in the KMS",
    )
    ca_import.add_argument(
        "pkcs12", metavar="PKCS12", nargs="?", help="issuer key and certificate (.p12)"
    )
    ca_import.add_argument(
        "--kms-private-key-id",
        metavar="ID",
        help="adopt the issuer whose private key is already in the KMS under this id "
        "(with --chain: the issuer certificate and its chain)",
    )
    secret = ca_import.add_mutually_exclusive_group()
    secret.add_argument("--password-file", help="file holding the PKCS#12 password")
    secret.add_argument("--password-env", help="environment variable holding the password")
    ca_import.add_argument(
        "--chain",
        help="PEM file of certificates above the issuer (with --kms-private-key-id: the issuer "
        "certificate too)",
    )
    ca_import.add_argument("--label", help="name of this CA (default: ca.label)")
    ca_import.add_argument("--replace", action="store_true", help="replace a CA of that label")
    format_option(ca_import)
    ca_import.set_defaults(handler=cmd_ca_import)
    ca_show = ca_sub.add_parser("show", help="show the imported issuing CAs")
    format_option(ca_show)
    ca_show.set_defaults(handler=cmd_ca_show)

    cert = commands.add_parser("cert", help="certificate commands (debugging)")
    cert_sub = cert.add_subparsers(dest="cert_command", metavar="ACTION", required=True)
    issue = cert_sub.add_parser(
        "issue", help="create a key pair and certificate; write EMAIL.p7pem and EMAIL.wrap"
    )
    issue.add_argument("email")
    issue.add_argument("--out", required=True, help="folder to write the files to")
    issue.add_argument("--rsa-bits", type=int, choices=[2048, 3072, 4096], default=None)
    format_option(issue)
    issue.set_defaults(handler=cmd_cert_issue)
