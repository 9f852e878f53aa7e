"""The report as plain text for a terminal or an email body: one titled table per section."""

from __future__ import annotations

from dataclasses import asdict

from syncd.output import render_record, render_table
from syncd.report.model import CHANGE_KINDS, Report

_COVERAGE_LABELS = [
    ("users_in_scope", "users in scope"),
    ("eligible", "in scope and enabled"),
    ("covered", "covered (active identity)"),
    ("percent_covered", "percent covered"),
    ("blocked", "deprovision blocked"),
    ("drift", "drift (repair pending)"),
    ("not_covered", "not covered"),
    ("pending", "pending"),
    ("failed", "failed"),
    ("disabled_in_scope", "disabled in scope"),
    ("deprovisioned", "deprovisioned"),
]
_FAILURE_COLUMNS = [
    ("email", "user"),
    ("task", "task"),
    ("step", "step"),
    ("attempts", "attempts"),
    ("since", "failing since"),
    ("error", "error"),
]
_EXPIRING_COLUMNS = [("expires", "expires"), ("days_left", "days left"), ("email", "user")]
_CHANGE_COLUMNS = [("at", "at"), ("change", "change"), ("email", "user")]
_DRIFT_COLUMNS = [("email", "user"), ("code", "drift"), ("found", "found"), ("detail", "detail")]
_KEY_FORMAT_COLUMNS = [
    ("email", "user"),
    ("generation", "generation"),
    ("status", "status"),
    ("key_pair_id", "key pair"),
    ("private_key_format", "format"),
]
_REASON_COLUMNS = [("action", "action"), ("code", "code"), ("count", "count")]
_PASS_COLUMNS = [
    ("id", "run"),
    ("kind", "kind"),
    ("started_at", "started"),
    ("duration_seconds", "seconds"),
    ("outcome", "outcome"),
    ("done", "done"),
    ("failed", "failed"),
]


def _title(text: str) -> str:
    return f"{text}\n{'=' * len(text)}"


def _blocked(report: Report) -> list[str]:
    """The blocked deprovisions section: only when some are blocked."""
    refused = report.blocked
    if not refused.users:
        return []
    when = refused.at.strftime("%Y-%m-%d %H:%M:%SZ") if refused.at else "?"
    return [
        _title(f"Deprovisions blocked ({len(refused.users)})"),
        f"pass {refused.run_id}, {when}: {refused.reason}",
        render_table([{"email": email} for email in refused.users], [("email", "user")]),
        "",
    ]


def _drift(report: Report) -> list[str]:
    """The drift section: users not covered until repaired, and the window's counts."""
    drift = report.drift
    codes = ", ".join(f"{code}: {n}" for code, n in drift.found_by_code.items())
    return [
        _title(f"Drift: changed outside syncd, repair pending ({len(drift.users)})"),
        f"found: {drift.found}{f' ({codes})' if codes else ''}, repaired: {drift.repaired}",
        render_table([asdict(d) for d in drift.users], _DRIFT_COLUMNS),
        "",
    ]


def _reasons(report: Report, since: str) -> list[str]:
    """The planned actions by reason code: only when some were planned."""
    if not report.reasons:
        return []
    return [
        _title(f"Actions planned since {since}, by reason code"),
        render_table([asdict(r) for r in report.reasons], _REASON_COLUMNS),
        "",
    ]


def render_text(report: Report) -> str:
    stamp = report.generated_at.strftime("%Y-%m-%d %H:%M:%SZ")
    since = report.changes_since.strftime("%Y-%m-%d %H:%M:%SZ")
    changes = [
        {"at": c.at, "change": kind, "email": c.email}
        for kind in CHANGE_KINDS
        for c in report.changes[kind]
    ]
    changes.sort(key=lambda row: (row["at"], row["email"]))
    parts = [
        f"syncd report, {stamp}",
        "",
        _title("Coverage"),
        render_record(asdict(report.coverage), _COVERAGE_LABELS),
        "",
        *_blocked(report),
        *_drift(report),
        _title(f"Failures ({len(report.failures)})"),
        render_table([asdict(f) for f in report.failures], _FAILURE_COLUMNS),
        "",
        _title(
            f"Certificates expiring within {report.expiring_days} days ({len(report.expiring)})"
        ),
        render_table([asdict(e) for e in report.expiring], _EXPIRING_COLUMNS),
        "",
        _title(f"Changes since {since} ({report.changes_since_source.replace('_', ' ')})"),
        ", ".join(f"{kind}: {len(report.changes[kind])}" for kind in CHANGE_KINDS),
        render_table(changes, _CHANGE_COLUMNS),
        "",
        *_reasons(report, since),
        _title("Last passes"),
        render_table([asdict(p) for p in report.passes], _PASS_COLUMNS),
    ]
    if report.other_key_format:
        parts += [
            "",
            _title(
                f"Key pairs whose kaclsData is not {report.key_format} "
                f"({len(report.other_key_format)})"
            ),
            render_table([asdict(k) for k in report.other_key_format], _KEY_FORMAT_COLUMNS),
        ]
    return "\n".join(parts) + "\n"
