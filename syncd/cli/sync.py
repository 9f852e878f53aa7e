"""``syncd plan``, ``sync``, ``resync``, ``status`` and ``history``: the sync engine and what
it left in the state store."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd.cli.common import format_option
from syncd.domain import ReasonCode
from syncd.errors import EXIT_FAILURES, EXIT_OK, ConfigError
from syncd.output import Format, emit_listing, render_table, to_json

if TYPE_CHECKING:
    from syncd.config import Config, PolicyConfig
    from syncd.domain import ReasonCode
    from syncd.pipeline.sync import PassResult
    from syncd.plan import Plan
    from syncd.state.db import Database

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


def _plan_document(the_plan: Plan, policy: PolicyConfig) -> dict[str, Any]:
    return {
        "actions": [
            {
                "email": a.email,
                "action": a.kind.value,
                "reason": a.reason,
                "code": _code(a.code),
                "task": a.task_kind,
            }
            for a in the_plan.actions
        ],
        "held": [
            {"email": h.email, "reason": h.reason, "code": _code(h.code)} for h in the_plan.held
        ],
        "blocked_deprovisions": [a.email for a in the_plan.blocked_deprovisions],
        "blocked_reason": the_plan.blocked_reason,
        "blocked_code": _code(the_plan.blocked_code),
        "skipped_entries": the_plan.skipped_entries,
        "reissue": {**_reissue_counts(the_plan), "per_pass": policy.reissue_per_pass},
        "rollout": {
            **_rollout_counts(the_plan),
            "max_new_per_pass": policy.max_new_per_pass,
            "order": list(policy.rollout_order),
        },
    }


def _reissue_counts(the_plan: Plan) -> dict[str, int]:
    """Credentials out of date with the configuration: re-issued this pass, and left for
    later passes by policy.reissue_per_pass."""
    issued = sum(1 for a in the_plan.actions if a.code is ReasonCode.CONFIG_CHANGED)
    pending = the_plan.pending_reissue
    return {"out_of_date": issued + pending, "this_pass": issued, "pending": pending}


def _rollout_counts(the_plan: Plan) -> dict[str, int]:
    """Users without a credential: provisioned this pass, and left for later passes by
    policy.max_new_per_pass."""
    first = (ReasonCode.NEW_IN_SCOPE, ReasonCode.NO_CREDENTIAL)
    provisioned = sum(1 for a in the_plan.actions if a.code in first)
    deferred = the_plan.deferred_new
    return {"new": provisioned + deferred, "this_pass": provisioned, "deferred": deferred}


def _code(code: ReasonCode | None) -> str | None:
    return code.value if code is not None else None


def _print_plan(the_plan: Plan, fmt: Format, policy: PolicyConfig) -> None:
    if fmt == "json":
        print(to_json({"plan": _plan_document(the_plan, policy)}))
        return
    reissue_per_pass = policy.reissue_per_pass
    print(render_table(_plan_rows(the_plan), _PLAN_COLUMNS))
    reissue = _reissue_counts(the_plan)
    if reissue["out_of_date"]:
        print(
            f"\n{reissue['out_of_date']:,} credentials out of date with the configuration: "
            f"{reissue['this_pass']:,} re-issued this pass, {reissue['pending']:,} pending "
            f"(policy.reissue_per_pass: {reissue_per_pass})"
        )
    rollout = _rollout_counts(the_plan)
    if policy.max_new_per_pass is not None and rollout["new"]:
        print(
            f"\n{rollout['this_pass']:,} of {rollout['new']:,} new users provisioned this pass, "
            f"{rollout['deferred']:,} deferred (policy.max_new_per_pass: "
            f"{policy.max_new_per_pass})"
        )
    if the_plan.blocked_reason:
        print(f"\nblocked: {the_plan.blocked_reason}", file=sys.stderr)


def pass_document(result: PassResult) -> dict[str, Any]:
    """A pass as JSON: the summary line's counts, then each failure and unknown user."""
    return {
        "run_id": result.run_id,
        "clean": result.clean,
        **result.summary(),
        "failures": [
            {"email": f.email, "kind": f.kind, "step": f.failed_step, "error": f.error}
            for f in result.failures
        ],
        "unknown_users": list(result.unknown_users),
        "blocked_reason": result.plan.blocked_reason,
        "blocked_code": _code(result.plan.blocked_code),
    }


def _report_pass(result: PassResult, fmt: Format) -> int:
    code = EXIT_OK if result.clean else EXIT_FAILURES
    if fmt == "json":
        print(to_json({"pass": pass_document(result)}))
        return code
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
        + (
            f", {result.plan.pending_reissue:,} re-issues pending"
            if result.plan.pending_reissue
            else ""
        )
        + (f", {result.plan.deferred_new:,} new users deferred" if result.plan.deferred_new else "")
    )
    return code


def cmd_plan(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.app.passes import dry_run

    with App(config) as app:
        result = dry_run(app, allow_mass_deprovision=args.allow_mass_deprovision)
    _print_plan(result.plan, args.format, config.policy)
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.app.passes import sync_pass
    from syncd.cli.progress import ProgressBar

    if args.dry_run:
        return cmd_plan(args, config)
    with ProgressBar() as bar:

        def on_plan(the_plan: Plan) -> None:
            bar.start(len(the_plan.actions))

        with App(config) as app:
            result = sync_pass(
                app,
                allow_mass_deprovision=args.allow_mass_deprovision,
                on_plan=on_plan,
                on_done=bar.advance,
            )
    return _report_pass(result, args.format)


def cmd_resync(args: argparse.Namespace, config: Config) -> int:
    from syncd.app.context import App
    from syncd.app.passes import resync

    if not args.all and not args.user:
        raise ConfigError("resync", "name users with --user EMAIL (repeatable) or use --all")
    with App(config) as app:
        result = resync(app, None if args.all else args.user, force=args.force)
    return _report_pass(result, args.format)


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


def _database(config: Config) -> Database:
    """The state store, schema checked (as ``App(config).database``, without loading what the
    rest of App needs: a read-only command stays quick to start)."""
    from syncd.state.db import Database

    return Database.open(config.state.url, require_current=True)


_INSTANCE_COLUMNS = [
    ("instance", "instance"),
    ("token", "token"),
    ("started", "started"),
    ("heartbeat", "last heartbeat"),
    ("live", "live"),
    ("workers", "workers"),
    ("claimed_tasks", "claimed tasks"),
]


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from syncd.state.queries import instance_status, key_pairs_in_other_format, user_status

    if args.instances:
        if not config.state.shared:
            raise ConfigError(
                "--instances", "lists a shared group's instances: state.shared is not set"
            )
        with _database(config).engine.connect() as connection:
            members = instance_status(connection, datetime.now(UTC))
        emit_listing("instances", members, _INSTANCE_COLUMNS, args.format)
        return EXIT_OK
    if args.other_key_format:
        with _database(config).engine.connect() as connection:
            configured = config.kacls.private_key_format
            pairs = key_pairs_in_other_format(connection, configured, args.user)
        emit_listing("key_pairs", pairs, _KEY_FORMAT_COLUMNS, args.format)
        return EXIT_OK
    with _database(config).engine.connect() as connection:
        rows = user_status(connection, args.user)
    if args.user and not rows:
        raise ConfigError("--user", f"{args.user} is not in the state store")
    columns = [*_STATUS_COLUMNS, ("held_by", "held by")] if config.state.shared else _STATUS_COLUMNS
    emit_listing("users", rows, columns, args.format)
    return EXIT_OK


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    from syncd.state.queries import history

    with _database(config).engine.connect() as connection:
        rows = history(connection, args.user)
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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan_cmd = commands.add_parser("plan", help="show what a pass would do (changes nothing)")
    plan_cmd.add_argument("--allow-mass-deprovision", action="store_true")
    format_option(plan_cmd)
    plan_cmd.set_defaults(handler=cmd_plan)

    sync = commands.add_parser("sync", help="run one pass: directory -> plan -> pipeline")
    sync.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    sync.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    sync.add_argument(
        "--allow-mass-deprovision",
        action="store_true",
        help="deprovision even past policy.max_deprovision (this pass only)",
    )
    format_option(sync)
    sync.set_defaults(handler=cmd_sync)

    resync_cmd = commands.add_parser(
        "resync", help="re-run the pipeline for users, verifying each step against Gmail and KMS"
    )
    resync_cmd.add_argument("--user", action="append", default=[], metavar="EMAIL")
    resync_cmd.add_argument("--all", action="store_true", help="every provisioned user")
    resync_cmd.add_argument("--force", action="store_true", help="issue a fresh key pair")
    format_option(resync_cmd)
    resync_cmd.set_defaults(handler=cmd_resync)

    status_cmd = commands.add_parser("status", help="per-user state")
    status_cmd.add_argument("--user", metavar="EMAIL")
    status_cmd.add_argument(
        "--other-key-format",
        action="store_true",
        help="list the key pairs in Gmail whose kaclsData is not in kacls.private_key_format",
    )
    status_cmd.add_argument(
        "--instances",
        action="store_true",
        help="list the instances of the shared group (state.shared) and the tasks each holds",
    )
    format_option(status_cmd)
    status_cmd.set_defaults(handler=cmd_status)

    history_cmd = commands.add_parser("history", help="a user's audit trail")
    history_cmd.add_argument("--user", metavar="EMAIL", required=True)
    format_option(history_cmd)
    history_cmd.set_defaults(handler=cmd_history)
