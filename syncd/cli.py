"""The ``syncd`` command line: argument parsing, output formats and exit codes.

No business logic lives here: each command opens what it needs through :class:`syncd.app.App`
and calls the module that owns the work. Exit codes (docs/cli.md): 0 success, 1 finished with
per-user failures, 2 usage or configuration error, 3 another run holds the lock, 4 a dependency
is unavailable (database down or unreachable, disk full): try again later.

:func:`main` is the one place where errors become exit codes: syncd's own errors carry theirs,
and database driver errors and full disks are mapped here once, for every command.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd import __version__
from syncd.app import App
from syncd.config import Config, default_config_path, load_config, redacted_summary
from syncd.errors import (
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    SyncdError,
    UnavailableError,
)
from syncd.logs import setup_logging
from syncd.output import Format, emit_listing, emit_record, render_table, to_json

if TYPE_CHECKING:
    from syncd.pipeline.sync import PassResult
    from syncd.plan import Plan

log = logging.getLogger("syncd")

Handler = Callable[[argparse.Namespace, Config], int]


def _now() -> datetime:
    return datetime.now(UTC)


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output format"
    )


def _read_password(args: argparse.Namespace) -> bytes | None:
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


def _read_input_file(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(option, f"cannot read {path}: {exc.strerror}") from None


# --- commands -----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    from syncd.setup import initialise

    for line in initialise(config, generate_kacls_key=args.generate_kacls_key):
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
    from syncd.setup import check_configuration, problems_exit_code

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


def cmd_db_upgrade(args: argparse.Namespace, config: Config) -> int:
    from syncd.state.db import Database, schema_status

    database = Database.open(config.state.url, require_current=False)
    applied = database.upgrade()
    current, head = schema_status(database.engine)
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
    from syncd.issuers import adopt_issuer, import_issuer

    _ca_import_source(args)
    app = App(config)
    label = args.label or config.ca.label
    with app.run_lock():
        kms = app.key_manager()
        if args.kms_private_key_id is not None:
            issuer, warnings = adopt_issuer(
                app.database.sessions,
                kms,
                label=label,
                private_key_id=args.kms_private_key_id,
                chain_pem=_read_input_file(args.chain, "--chain"),
                now=_now(),
                chain_where=f"--chain {args.chain}",
                replace=args.replace,
            )
        else:
            issuer, warnings = import_issuer(
                app.database.sessions,
                kms,
                label=label,
                pkcs12_data=_read_input_file(args.pkcs12, "PKCS12"),
                password=_read_password(args),
                extra_chain_pem=_read_input_file(args.chain, "--chain") if args.chain else None,
                now=_now(),
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
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    how = "adopted" if args.kms_private_key_id is not None else "imported"
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
    from syncd.issuers import list_issuers

    app = App(config)
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
    from syncd.debug_cert import write_debug_credential

    app = App(config)
    with app.run_lock():
        paths = write_debug_credential(
            app, args.email, Path(args.out), bits=args.rsa_bits, now=_now()
        )
    for path in paths:
        print(f"wrote {path}")
    return EXIT_OK


# --- sync engine ----------------------------------------------------------------------------

_PLAN_COLUMNS = [("email", "user"), ("action", "action"), ("reason", "reason")]


def _plan_rows(the_plan: Plan) -> list[dict[str, Any]]:
    rows = [
        {"email": a.email, "action": a.kind.value, "reason": a.reason} for a in the_plan.actions
    ]
    rows += [{"email": h.email, "action": "hold", "reason": h.reason} for h in the_plan.held]
    rows += [
        {"email": a.email, "action": "blocked deprovision", "reason": a.reason}
        for a in the_plan.blocked_deprovisions
    ]
    return rows


def _print_plan(the_plan: Plan, fmt: Format) -> None:
    if fmt == "json":
        document = {
            "actions": [
                {"email": a.email, "action": a.kind.value, "reason": a.reason, "task": a.task_kind}
                for a in the_plan.actions
            ],
            "held": [{"email": h.email, "reason": h.reason} for h in the_plan.held],
            "blocked_deprovisions": [a.email for a in the_plan.blocked_deprovisions],
            "blocked_reason": the_plan.blocked_reason,
            "skipped_entries": the_plan.skipped_entries,
        }
        print(to_json({"plan": document}))
        return
    print(render_table(_plan_rows(the_plan), _PLAN_COLUMNS))
    if the_plan.blocked_reason:
        print(f"\nblocked: {the_plan.blocked_reason}", file=sys.stderr)


def _report_pass(result: PassResult) -> int:
    for failure in result.failures:
        print(f"failed: {failure.email} ({failure.kind}) {failure.error}", file=sys.stderr)
    for email in result.unknown_users:
        print(f"unknown user: {email} (not in the state store)", file=sys.stderr)
    if result.plan.blocked_reason:
        print(f"blocked: {result.plan.blocked_reason}", file=sys.stderr)
    summary = result.summary()
    print(
        f"pass {result.run_id}: {summary['done']} done, {summary['failed']} failed, "
        f"{summary['held']} held, {summary['blocked_deprovisions']} deprovisions blocked"
    )
    return EXIT_OK if result.clean else EXIT_FAILURES


def cmd_plan(args: argparse.Namespace, config: Config) -> int:
    from syncd.pipeline.sync import dry_run

    result = dry_run(App(config), allow_mass_deprovision=args.allow_mass_deprovision)
    _print_plan(result.plan, args.format)
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from syncd.pipeline.sync import sync_pass
    from syncd.progress import ProgressBar

    if args.dry_run:
        return cmd_plan(args, config)
    bar = ProgressBar(0)

    def on_plan(the_plan: Plan) -> None:
        bar.total = len(the_plan.actions)
        bar.enabled = bar.total > 0 and bar.stream.isatty()

    result = sync_pass(
        App(config),
        allow_mass_deprovision=args.allow_mass_deprovision,
        on_plan=on_plan,
        on_done=bar.advance,
    )
    return _report_pass(result)


def cmd_resync(args: argparse.Namespace, config: Config) -> int:
    from syncd.pipeline.sync import resync

    if not args.all and not args.user:
        raise ConfigError("resync", "name users with --user EMAIL (repeatable) or use --all")
    result = resync(App(config), None if args.all else args.user, force=args.force)
    return _report_pass(result)


_STATUS_COLUMNS = [
    ("email", "user"),
    ("state", "state"),
    ("step", "step"),
    ("key_pair_id", "key pair"),
    ("certificate_expires", "expires"),
    ("last_error", "last error"),
]


_KEY_FORMAT_COLUMNS = [
    ("email", "user"),
    ("generation", "generation"),
    ("status", "status"),
    ("key_pair_id", "key pair"),
    ("private_key_format", "kaclsData format"),
    ("certificate_expires", "expires"),
]


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from syncd.state.queries import key_pairs_in_other_format, user_status

    if args.other_key_format:
        with App(config).database.sessions() as session:
            pairs = key_pairs_in_other_format(session, config.kacls.private_key_format)
        if args.user:
            pairs = [row for row in pairs if row["email"] == args.user.strip().lower()]
        emit_listing("key_pairs", pairs, _KEY_FORMAT_COLUMNS, args.format)
        return EXIT_OK
    with App(config).database.sessions() as session:
        rows = user_status(session, args.user)
    if args.user and not rows:
        raise ConfigError("--user", f"{args.user} is not in the state store")
    emit_listing("users", rows, _STATUS_COLUMNS, args.format)
    return EXIT_OK


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    from syncd.state.queries import history

    with App(config).database.sessions() as session:
        rows = history(session, args.user)
    if args.format == "json":
        emit_listing("events", rows, [], "json")
    else:
        shown = [{**row, "detail": json.dumps(row["detail"], sort_keys=True)} for row in rows]
        emit_listing(
            "events",
            shown,
            [("at", "at"), ("action", "action"), ("run_id", "run"), ("detail", "detail")],
            "table",
        )
    return EXIT_OK


def cmd_sandbox_serve(args: argparse.Namespace, config: Config | None) -> int:
    from syncd.sandbox import serve

    serve(args.host, args.port, Path(args.data))
    return EXIT_OK


# --- google key-pairs / identities (one user, outside the pipeline) --------------------------

_KEYPAIR_COLUMNS = [
    ("key_pair_id", "key pair"),
    ("enablement_state", "state"),
    ("subject_email_addresses", "emails"),
    ("not_after", "expires"),
    ("disable_time", "disabled at"),
]
_KEYPAIR_LABELS = [
    ("user", "user"),
    ("key_pair_id", "key pair"),
    ("enablement_state", "state"),
    ("subject_email_addresses", "emails"),
    ("disable_time", "disabled at"),
    ("subject", "subject"),
    ("issuer", "issued by"),
    ("serial", "serial"),
    ("sha256_fingerprint", "SHA-256"),
    ("not_before", "valid from"),
    ("not_after", "valid until"),
]
_IDENTITY_COLUMNS = [
    ("email_address", "identity"),
    ("primary_key_pair_id", "key pair"),
    ("signing_key_pair_id", "signing key pair"),
    ("encryption_key_pair_id", "encryption key pair"),
]


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _pkcs12_leaf_options(args: argparse.Namespace) -> tuple[bytes, bytes | None] | None:
    """(PKCS#12 bytes, password) of --leaf-certificate-pkcs12-file, checked against the rest."""
    if args.leaf_certificate_pkcs12_file is None:
        if args.leaf_certificate_pkcs12_password_file:
            raise ConfigError(
                "--leaf-certificate-pkcs12-password-file",
                "only used with --leaf-certificate-pkcs12-file",
            )
        return None
    for option, value in (
        ("--subject-name", args.subject_name),
        ("--leaf-certificate-extensions", args.leaf_certificate_extensions),
        ("--rsa-bits", args.rsa_bits),
    ):
        if value is not None:
            raise ConfigError(
                option,
                "cannot be used with --leaf-certificate-pkcs12-file "
                "(the certificate and key are taken as they are)",
            )
    data = _read_input_file(args.leaf_certificate_pkcs12_file, "--leaf-certificate-pkcs12-file")
    password = None
    if args.leaf_certificate_pkcs12_password_file:
        password = _read_input_file(
            args.leaf_certificate_pkcs12_password_file, "--leaf-certificate-pkcs12-password-file"
        ).rstrip(b"\r\n")
    return data, password


def cmd_google_keypairs_create(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    pkcs12_leaf = _pkcs12_leaf_options(args)
    external = None
    if pkcs12_leaf is not None:
        external = manual.read_pkcs12_leaf(*pkcs12_leaf, where=args.leaf_certificate_pkcs12_file)
    created = manual.create_keypair(
        App(config),
        args.user,
        _now(),
        subject_name=args.subject_name,
        extensions_file=_optional_path(args.leaf_certificate_extensions),
        rsa_bits=args.rsa_bits,
        external=external,
    )
    record = manual.describe_keypair(args.user, created.keypair)
    if args.format == "json":
        record |= {"kms_private_key_id": created.kms_private_key_id, "source": created.source}
        emit_record("keypair", record, "json")
    else:
        print(record["key_pair_id"])
    return EXIT_OK


def _emit_keypair(args: argparse.Namespace, keypair: dict[str, Any]) -> int:
    from syncd import manual

    emit_record("keypair", manual.describe_keypair(args.user, keypair), args.format,
                _KEYPAIR_LABELS)
    return EXIT_OK


def _emit_identity(args: argparse.Namespace, identity: dict[str, Any]) -> int:
    from syncd import manual

    emit_record("identity", manual.describe_identity(args.user, identity), args.format,
                _IDENTITY_COLUMNS)
    return EXIT_OK


def cmd_google_keypairs_list(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    keypairs = manual.list_keypairs(App(config), args.user)
    rows = [manual.describe_keypair(args.user, keypair) for keypair in keypairs]
    emit_listing("keypairs", rows, _KEYPAIR_COLUMNS, args.format)
    return EXIT_OK


def cmd_google_keypairs_get(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    keypair = manual.get_keypair(App(config), args.user, args.key_pair_id)
    return _emit_keypair(args, keypair)


def cmd_google_keypairs_set_state(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    enabled = args.keypairs_command == "enable"
    keypair = manual.set_keypair_enabled(App(config), args.user, args.key_pair_id, enabled)
    return _emit_keypair(args, keypair)


def cmd_google_keypairs_obliterate(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    manual.obliterate_keypair(App(config), args.user, args.key_pair_id)
    user = manual.normalise_user(args.user)
    if args.format == "json":
        record = {"user": user, "key_pair_id": args.key_pair_id, "obliterated": True}
        emit_record("keypair", record, "json")
    else:
        print(f"obliterated key pair {args.key_pair_id} of {user}")
    return EXIT_OK


def cmd_google_identities_point(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    if args.identities_command == "insert":
        identity = manual.insert_identity(App(config), args.user, args.key_pair_id)
    else:
        identity = manual.patch_identity(App(config), args.user, args.key_pair_id)
    return _emit_identity(args, identity)


def cmd_google_identities_list(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    identities = manual.list_identities(App(config), args.user)
    rows = [manual.describe_identity(args.user, identity) for identity in identities]
    emit_listing("identities", rows, _IDENTITY_COLUMNS, args.format)
    return EXIT_OK


def cmd_google_identities_get(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    identity = manual.get_identity(App(config), args.user)
    return _emit_identity(args, identity)


def cmd_google_identities_delete(args: argparse.Namespace, config: Config) -> int:
    from syncd import manual

    manual.delete_identity(App(config), args.user)
    user = manual.normalise_user(args.user)
    if args.format == "json":
        emit_record("identity", {"user": user, "email_address": user, "deleted": True}, "json")
    else:
        print(f"deleted the identity of {user}")
    return EXIT_OK


def _google_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    google = commands.add_parser(
        "google", help="Gmail CSE key pairs and identities of one user (outside the pipeline)"
    )
    resources = google.add_subparsers(dest="google_command", metavar="RESOURCE", required=True)

    keypairs = resources.add_parser("key-pairs", help="a user's CSE key pairs")
    kp_sub = keypairs.add_subparsers(dest="keypairs_command", metavar="ACTION", required=True)
    create = kp_sub.add_parser(
        "create", help="create a key in the KMS, issue its certificate, upload it to Gmail"
    )
    create.add_argument("user", metavar="USER")
    create.add_argument(
        "--subject-name", metavar="DN", help="subject of this certificate (RFC 4514; {email}...)"
    )
    create.add_argument(
        "--leaf-certificate-extensions",
        metavar="FILE",
        help="OpenSSL-style [v3_ca] extensions file (instead of certificate.extensions_file)",
    )
    create.add_argument(
        "--leaf-certificate-pkcs12-file",
        metavar="FILE",
        help="upload this PKCS#12 leaf certificate and its own private key instead",
    )
    create.add_argument(
        "--leaf-certificate-pkcs12-password-file", metavar="FILE", help="its password"
    )
    create.add_argument("--rsa-bits", type=int, choices=[2048, 3072, 4096], default=None)
    _format_option(create)
    create.set_defaults(handler=cmd_google_keypairs_create)
    kp_list = kp_sub.add_parser("list", help="a user's key pairs")
    kp_list.add_argument("user", metavar="USER")
    _format_option(kp_list)
    kp_list.set_defaults(handler=cmd_google_keypairs_list)
    one_keypair: list[tuple[str, str, Handler]] = [
        ("get", "show one key pair", cmd_google_keypairs_get),
        ("enable", "enable a key pair", cmd_google_keypairs_set_state),
        ("disable", "disable a key pair (mail to it can no longer be read)",
         cmd_google_keypairs_set_state),
        ("obliterate", "destroy a key pair disabled for more than 30 days",
         cmd_google_keypairs_obliterate),
    ]
    for name, help_text, handler in one_keypair:
        action = kp_sub.add_parser(name, help=help_text)
        action.add_argument("user", metavar="USER")
        action.add_argument("key_pair_id", metavar="ID")
        _format_option(action)
        action.set_defaults(handler=handler)

    identities = resources.add_parser("identities", help="a user's CSE identity")
    id_sub = identities.add_subparsers(dest="identities_command", metavar="ACTION", required=True)
    with_keypair: list[tuple[str, str]] = [
        ("insert", "make a key pair the user's CSE identity"),
        ("patch", "point the user's identity at another key pair"),
    ]
    for name, help_text in with_keypair:
        action = id_sub.add_parser(name, help=help_text)
        action.add_argument("user", metavar="USER")
        action.add_argument("key_pair_id", metavar="KEYPAIR_ID")
        _format_option(action)
        action.set_defaults(handler=cmd_google_identities_point)
    user_only: list[tuple[str, str, Handler]] = [
        ("list", "a user's identities", cmd_google_identities_list),
        ("get", "show the user's identity", cmd_google_identities_get),
        ("delete", "delete the user's identity", cmd_google_identities_delete),
    ]
    for name, help_text, handler in user_only:
        action = id_sub.add_parser(name, help=help_text)
        action.add_argument("user", metavar="USER")
        _format_option(action)
        action.set_defaults(handler=handler)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from syncd.daemon import run

    return run(config)


def cmd_health(args: argparse.Namespace, config: Config) -> int:
    from syncd.health import check_health

    health = check_health(config, _now())
    if args.format == "json":
        print(to_json(health.to_dict()))
    else:
        for check in health.checks:
            print(f"{'ok' if check.ok else 'FAIL':<4} {check.name}: {check.detail}")
        print("healthy" if health.ok else "unhealthy")
    return EXIT_OK if health.ok else EXIT_FAILURES


# --- directory test -------------------------------------------------------------------------

_DIRECTORY_USER_COLUMNS = [
    ("email", "user"),
    ("directory_id", "directory id"),
    ("enabled", "enabled"),
]


def cmd_directory_test(args: argparse.Namespace, config: Config) -> int:
    """Read the directory as a pass would; print the count in scope, some users, the time."""
    import time
    from dataclasses import asdict

    from syncd.directory import open_source

    source = open_source(config.directory, config.google)
    started = time.monotonic()
    wanted = (args.user or "").strip().lower()
    if args.user:
        lookup = getattr(source, "lookup", None)  # a source that can fetch one user does so
        if lookup:  # it finds the user by any of its addresses, and names the one syncd uses
            snapshot = lookup(args.user, _now())
            users = list(snapshot.users)
        else:
            snapshot = source.read(_now())
            users = [user for user in snapshot.users if user.email == wanted]
    else:
        snapshot = source.read(_now())
        users = list(snapshot.users)
    seconds = time.monotonic() - started
    enabled = sum(1 for user in users if user.enabled)
    shown = [asdict(user) for user in users[: args.limit]]
    record: dict[str, Any] = {
        "source": source.name,
        "users_in_scope": len(users),
        "enabled": enabled,
        "disabled": len(users) - enabled,
        "read_seconds": round(seconds, 3),
        "users": shown,
        "skipped": [asdict(skip) for skip in snapshot.skipped],
    }
    other_address = [user.email for user in users if user.email != wanted] if wanted else []
    if args.user:
        record["address_used"] = users[0].email if users else None
    if args.format == "json":
        print(to_json({"directory_test": record}))
    else:
        print(
            f"source {source.name}: {len(users)} user(s) in scope ({enabled} enabled, "
            f"{len(users) - enabled} disabled), read in {seconds:.2f}s"
        )
        print(render_table(shown, _DIRECTORY_USER_COLUMNS))
        if len(users) > args.limit:
            print(f"... and {len(users) - args.limit} more")
        for skip in snapshot.skipped:
            print(f"skipped: {skip.where}: {skip.reason}")
        for email in other_address:
            print(f"{wanted} is another address of this entry: syncd uses {email}")
    if args.user and not users:
        print(f"{args.user} is not in scope", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_OK


# --- kms test -------------------------------------------------------------------------------

_KMS_TEST_COLUMNS = [
    ("operation", "operation"),
    ("result", "result"),
    ("milliseconds", "ms"),
    ("detail", "detail"),
]


def cmd_kms_test(args: argparse.Namespace, config: Config) -> int:
    """Prove each KMS capability on a throwaway key; a table of operation, result, time."""
    from syncd.errors import CANotImportedError
    from syncd.issuers import IssuingCA, load_issuer
    from syncd.kms import KeyManager, Keyring
    from syncd.kms.kacls import load_wrapping_key
    from syncd.kms.probe import ProbeSettings, describe_wrapping, run_probe

    app = App(config)
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


# --- report -------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    """Coverage, failures, expiring certificates, changes and passes; --fail-on sets exit 1."""
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
    result = produce_report(config, App(config).database, options, _now())
    for check in result.alerts:
        print(f"syncd: fail-on {check.reason}", file=sys.stderr)
    if result.mail_error is not None:
        print(f"syncd: the report was not emailed: {result.mail_error}", file=sys.stderr)
    return EXIT_FAILURES if result.alerts or result.mail_error else EXIT_OK


# --- parser -------------------------------------------------------------------------------


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

    init = commands.add_parser("init", help="create the master key and the state database")
    init.add_argument(
        "--generate-kacls-key",
        action="store_true",
        help="also create kacls.wrapping_key_file (only for a sandbox or a new KACLS)",
    )
    init.set_defaults(handler=cmd_init)

    config_cmd = commands.add_parser("config", help="configuration commands")
    config_sub = config_cmd.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate and print a redacted summary")
    _format_option(check)
    check.set_defaults(handler=cmd_config_check)

    db = commands.add_parser("db", help="state store commands")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations").set_defaults(
        handler=cmd_db_upgrade
    )
    status = db_sub.add_parser("status", help="show the schema revision")
    _format_option(status)
    status.set_defaults(handler=cmd_db_status)

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
    ca_import.set_defaults(handler=cmd_ca_import)
    ca_show = ca_sub.add_parser("show", help="show the imported issuing CAs")
    _format_option(ca_show)
    ca_show.set_defaults(handler=cmd_ca_show)

    cert = commands.add_parser("cert", help="certificate commands (debugging)")
    cert_sub = cert.add_subparsers(dest="cert_command", metavar="ACTION", required=True)
    issue = cert_sub.add_parser(
        "issue", help="create a key pair and certificate; write EMAIL.p7pem and EMAIL.wrap"
    )
    issue.add_argument("email")
    issue.add_argument("--out", required=True, help="folder to write the files to")
    issue.add_argument("--rsa-bits", type=int, choices=[2048, 3072, 4096], default=None)
    issue.set_defaults(handler=cmd_cert_issue)
    plan_cmd = commands.add_parser("plan", help="show what a pass would do (changes nothing)")
    plan_cmd.add_argument("--allow-mass-deprovision", action="store_true")
    _format_option(plan_cmd)
    plan_cmd.set_defaults(handler=cmd_plan)

    sync = commands.add_parser("sync", help="run one pass: directory -> plan -> pipeline")
    sync.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    sync.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    sync.add_argument(
        "--allow-mass-deprovision",
        action="store_true",
        help="deprovision even past policy.max_deprovision (this pass only)",
    )
    _format_option(sync)
    sync.set_defaults(handler=cmd_sync)

    resync_cmd = commands.add_parser(
        "resync", help="re-run the pipeline for users, verifying each step against Gmail and KMS"
    )
    resync_cmd.add_argument("--user", action="append", default=[], metavar="EMAIL")
    resync_cmd.add_argument("--all", action="store_true", help="every provisioned user")
    resync_cmd.add_argument("--force", action="store_true", help="issue a fresh key pair")
    resync_cmd.set_defaults(handler=cmd_resync)

    status_cmd = commands.add_parser("status", help="per-user state")
    status_cmd.add_argument("--user", metavar="EMAIL")
    status_cmd.add_argument(
        "--other-key-format",
        action="store_true",
        help="list the key pairs in Gmail whose kaclsData is not in kacls.private_key_format",
    )
    _format_option(status_cmd)
    status_cmd.set_defaults(handler=cmd_status)

    history_cmd = commands.add_parser("history", help="a user's audit trail")
    history_cmd.add_argument("--user", metavar="EMAIL", required=True)
    _format_option(history_cmd)
    history_cmd.set_defaults(handler=cmd_history)

    sandbox = commands.add_parser("sandbox", help="the local Google API emulator")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve_cmd = sandbox_sub.add_parser("serve", help="serve the sandbox until interrupted")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8765)
    serve_cmd.add_argument("--data", required=True, help="sandbox data folder")
    serve_cmd.set_defaults(handler=cmd_sandbox_serve, needs_config=False)

    _google_parser(commands)

    run_cmd = commands.add_parser(
        "run", help="the service: scheduled passes until SIGTERM (SIGHUP reloads)"
    )
    run_cmd.set_defaults(handler=cmd_run)

    health_cmd = commands.add_parser(
        "health", help="exit 0 if the database is reachable and the last pass recent and sound"
    )
    _format_option(health_cmd)
    health_cmd.set_defaults(handler=cmd_health)

    directory_cmd = commands.add_parser("directory", help="directory source commands")
    directory_sub = directory_cmd.add_subparsers(
        dest="directory_command", metavar="ACTION", required=True
    )
    directory_test = directory_sub.add_parser(
        "test", help="read the directory: users in scope, the first few, skipped entries, time"
    )
    directory_test.add_argument("--limit", type=int, default=10, help="users to list (10)")
    directory_test.add_argument("--user", metavar="EMAIL", help="look up one user only")
    _format_option(directory_test)
    directory_test.set_defaults(handler=cmd_directory_test)

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

    kms_cmd = commands.add_parser("kms", help="KMS commands")
    kms_sub = kms_cmd.add_subparsers(dest="kms_command", metavar="ACTION", required=True)
    kms_test = kms_sub.add_parser(
        "test",
        help="connect to the KMS and prove each operation on a throwaway key (create, sign, "
        "wrap, unwrap, the issuer key, revoke, destroy)",
    )
    _format_option(kms_test)
    kms_test.set_defaults(handler=cmd_kms_test)

    # New command groups go above this line.
    return parser


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def os_error(error: OSError) -> SyncdError:
    """The one-line error for a file operation that failed outside syncd's own checks."""
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error)
    if error.errno in _NO_SPACE:
        return UnavailableError(f"{where}{reason}: free space on that file system")
    return ConfigError("", f"{where}{reason}")


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import DBAPIError

    from syncd.state.db import database_error

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("WARNING", "auto")
    config: Config | None = None
    try:
        try:
            if not getattr(args, "needs_config", True):
                return int(args.handler(args, None))
            config = load_config(args.config or default_config_path())
            setup_logging(config.logging.level, config.logging.format)
            handler: Handler = args.handler
            return handler(args, config)
        except DBAPIError as error:
            url = config.state.url if config is not None else "sqlite://"
            raise database_error(error, url) from None
        except OSError as error:
            raise os_error(error) from None
    except SyncdError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130


__all__ = ["Format", "build_parser", "main"]
