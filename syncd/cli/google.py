"""``syncd google key-pairs|identities ...``: one user's Gmail CSE key pairs and identities,
outside the pipeline (the work is in :mod:`syncd.app.manual`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from syncd.cli.common import (
    Handler,
    format_option,
    now,
    optional_path,
    read_input_file,
)
from syncd.errors import EXIT_OK, ConfigError
from syncd.output import emit_listing, emit_record

if TYPE_CHECKING:
    from syncd.app.context import App
    from syncd.config import Config


def app_for(config: Config) -> App:
    from syncd.app.context import App

    return App(config)


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
    data = read_input_file(args.leaf_certificate_pkcs12_file, "--leaf-certificate-pkcs12-file")
    password = None
    if args.leaf_certificate_pkcs12_password_file:
        password = read_input_file(
            args.leaf_certificate_pkcs12_password_file, "--leaf-certificate-pkcs12-password-file"
        ).rstrip(b"\r\n")
    return data, password


def cmd_google_keypairs_create(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    pkcs12_leaf = _pkcs12_leaf_options(args)
    external = None
    if pkcs12_leaf is not None:
        external = manual.read_pkcs12_leaf(*pkcs12_leaf, where=args.leaf_certificate_pkcs12_file)
    with app_for(config) as app:
        created = manual.create_keypair(
            app,
            args.user,
            now(),
            subject_name=args.subject_name,
            extensions_file=optional_path(args.leaf_certificate_extensions),
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
    from syncd.app import manual

    emit_record("keypair", manual.describe_keypair(args.user, keypair), args.format,
                _KEYPAIR_LABELS)
    return EXIT_OK


def _emit_identity(args: argparse.Namespace, identity: dict[str, Any]) -> int:
    from syncd.app import manual

    emit_record("identity", manual.describe_identity(args.user, identity), args.format,
                _IDENTITY_COLUMNS)
    return EXIT_OK


def cmd_google_keypairs_list(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    with app_for(config) as app:

        keypairs = manual.list_keypairs(app, args.user)
    rows = [manual.describe_keypair(args.user, keypair) for keypair in keypairs]
    emit_listing("keypairs", rows, _KEYPAIR_COLUMNS, args.format)
    return EXIT_OK


def cmd_google_keypairs_get(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    with app_for(config) as app:

        keypair = manual.get_keypair(app, args.user, args.key_pair_id)
    return _emit_keypair(args, keypair)


def cmd_google_keypairs_set_state(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    enabled = args.keypairs_command == "enable"
    with app_for(config) as app:
        keypair = manual.set_keypair_enabled(app, args.user, args.key_pair_id, enabled)
    return _emit_keypair(args, keypair)


def cmd_google_keypairs_obliterate(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    with app_for(config) as app:

        manual.obliterate_keypair(app, args.user, args.key_pair_id)
    user = manual.normalise_user(args.user)
    if args.format == "json":
        record = {"user": user, "key_pair_id": args.key_pair_id, "obliterated": True}
        emit_record("keypair", record, "json")
    else:
        print(f"obliterated key pair {args.key_pair_id} of {user}")
    return EXIT_OK


def cmd_google_identities_point(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    if args.identities_command == "insert":
        with app_for(config) as app:
            identity = manual.insert_identity(app, args.user, args.key_pair_id)
    else:
        with app_for(config) as app:
            identity = manual.patch_identity(app, args.user, args.key_pair_id)
    return _emit_identity(args, identity)


def cmd_google_identities_list(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    with app_for(config) as app:

        identities = manual.list_identities(app, args.user)
    rows = [manual.describe_identity(args.user, identity) for identity in identities]
    emit_listing("identities", rows, _IDENTITY_COLUMNS, args.format)
    return EXIT_OK


def cmd_google_identities_get(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    with app_for(config) as app:

        identity = manual.get_identity(app, args.user)
    return _emit_identity(args, identity)


def cmd_google_identities_delete(args: argparse.Namespace, config: Config) -> int:
    from syncd.app import manual

    with app_for(config) as app:

        manual.delete_identity(app, args.user)
    user = manual.normalise_user(args.user)
    if args.format == "json":
        emit_record("identity", {"user": user, "email_address": user, "deleted": True}, "json")
    else:
        print(f"deleted the identity of {user}")
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    format_option(create)
    create.set_defaults(handler=cmd_google_keypairs_create)
    kp_list = kp_sub.add_parser("list", help="a user's key pairs")
    kp_list.add_argument("user", metavar="USER")
    format_option(kp_list)
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
        format_option(action)
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
        format_option(action)
        action.set_defaults(handler=cmd_google_identities_point)
    user_only: list[tuple[str, str, Handler]] = [
        ("list", "a user's identities", cmd_google_identities_list),
        ("get", "show the user's identity", cmd_google_identities_get),
        ("delete", "delete the user's identity", cmd_google_identities_delete),
    ]
    for name, help_text, handler in user_only:
        action = id_sub.add_parser(name, help=help_text)
        action.add_argument("user", metavar="USER")
        format_option(action)
        action.set_defaults(handler=handler)
