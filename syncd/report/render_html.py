"""The report as one self-contained HTML page: inline CSS and SVG, no script, no external asset.

Readable in a browser, printable (print styles keep sections whole), and safe to attach to an
email. Every value from the state store is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from string import Template
from typing import Any

from syncd.report.charts import bar_chart, line_chart
from syncd.report.model import CHANGE_KINDS, Report

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>syncd report $stamp</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2933;
  margin: 2em auto; max-width: 60em; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { font-size: 1.2em; border-bottom: 2px solid #d9e2ec; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #52606d; margin-top: 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 0.8em; }
.tile { border: 1px solid #d9e2ec; border-radius: 6px; padding: 0.6em 1em; min-width: 8em; }
.tile .n { font-size: 1.6em; font-weight: 600; display: block; }
.tile.bad .n { color: #c53030; }
.tile.good .n { color: #2f855a; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { text-align: left; padding: 0.3em 0.6em; border-bottom: 1px solid #e4e7eb;
  vertical-align: top; }
th { background: #f0f4f8; }
td.err { font-family: ui-monospace, monospace; font-size: 0.9em; word-break: break-word; }
.none { color: #7b8794; font-style: italic; }
.caption { color: #52606d; font-size: 0.9em; margin-bottom: 0.2em; }
svg.chart { width: 100%; max-width: 640px; height: auto; display: block; }
section { break-inside: avoid; page-break-inside: avoid; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  @page { size: A4; margin: 15mm; }
  h2 { break-after: avoid; }
  tr { break-inside: avoid; }
}
</style>
</head>
<body>
<h1>syncd report</h1>
<p class="meta">Generated $stamp. Changes since $since ($since_source).</p>
<section id="coverage">
<h2>Coverage</h2>
<div class="tiles">$tiles</div>
<p>Covered: users in scope and enabled with an active CSE identity, out of all users in scope
and enabled; users whose deprovision was blocked, and users whose credential was changed
outside syncd (drift) until it is repaired, count as not covered. Pending and failed users
may overlap with covered ones (a renewal in progress).</p>
<p class="caption">Percent covered at each recorded report, and now:</p>
$coverage_chart
</section>
$blocked
<section id="drift">
<h2>Drift: changed outside syncd, repair pending ($drift_count)</h2>
<p>Found since $since: $drift_found; repaired: $drift_repaired.</p>
$drift
</section>
<section id="failures">
<h2>Failures ($failure_count)</h2>
$failures
</section>
<section id="expiring">
<h2>Certificates expiring within $expiring_days days ($expiring_count)</h2>
<p class="caption">Active certificates expiring in each of the coming 12 months (already
expired ones count in the current month):</p>
$expiry_chart
$expiring
</section>
<section id="changes">
<h2>Changes since $since</h2>
<p>$change_counts</p>
$changes
</section>
<section id="reasons">
<h2>Actions planned since $since, by reason code</h2>
$reasons
</section>
<section id="passes">
<h2>Last passes</h2>
$passes
</section>
</body>
</html>
""")


_ERR = ' class="err"'


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], error_column: int = -1) -> str:
    if not rows:
        return '<p class="none">None.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td{_ERR if i == error_column else ""}>{_text(cell)}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tile(label: str, value: str, tone: str = "") -> str:
    return (
        f'<div class="tile {tone}"><span class="n">{escape(value)}</span>{escape(label)}</div>'
    )


def _tiles(report: Report) -> str:
    c = report.coverage
    return "".join(
        [
            _tile(
                "covered",
                f"{c.percent_covered:g}%",
                "good" if c.not_covered == 0 and c.blocked == 0 else "bad",
            ),
            _tile("in scope", str(c.users_in_scope)),
            _tile("in scope and enabled", str(c.eligible)),
            _tile("with an active identity", str(c.covered)),
            _tile("pending", str(c.pending)),
            _tile("failed", str(c.failed), "bad" if c.failed else ""),
            _tile("deprovision blocked", str(c.blocked), "bad" if c.blocked else ""),
            _tile("drift", str(c.drift), "bad" if c.drift else ""),
            _tile("deprovisioned", str(c.deprovisioned)),
            _tile(
                f"expiring in {report.expiring_days} days",
                str(len(report.expiring)),
                "bad" if report.expiring else "",
            ),
        ]
    )


def _blocked(report: Report) -> str:
    """The blocked deprovisions section: only when some are blocked."""
    refused = report.blocked
    if not refused.users:
        return ""
    return (
        f'<section id="blocked">\n<h2>Deprovisions blocked ({len(refused.users)})</h2>\n'
        f'<p>Pass {_text(refused.run_id)}, {_text(refused.at)}: '
        f"{_text(refused.reason)}</p>\n"
        f"{_table(['user'], [(email,) for email in refused.users])}\n</section>"
    )


def render_html(report: Report) -> str:
    changes = sorted(
        ((c.at, kind, c.email) for kind in CHANGE_KINDS for c in report.changes[kind]),
        key=lambda row: (row[0], row[2]),
    )
    months = report.expiry_by_month
    drift = report.drift
    codes = ", ".join(f"{code}: {n}" for code, n in drift.found_by_code.items())
    return _PAGE.substitute(
        stamp=_text(report.generated_at),
        since=_text(report.changes_since),
        since_source=escape(report.changes_since_source.replace("_", " ")),
        tiles=_tiles(report),
        blocked=_blocked(report),
        drift_count=len(drift.users),
        drift_found=escape(f"{drift.found}{f' ({codes})' if codes else ''}"),
        drift_repaired=drift.repaired,
        drift=_table(
            ["user", "drift", "found", "detail"],
            [(d.email, d.code, d.found, d.detail) for d in drift.users],
            error_column=3,
        ),
        coverage_chart=line_chart(
            [(p.at, p.percent_covered) for p in report.coverage_history],
            "Coverage over time (percent covered at each report)",
        ),
        failure_count=len(report.failures),
        failures=_table(
            ["user", "task", "step", "attempts", "failing since", "error"],
            [(f.email, f.task, f.step, f.attempts, f.since, f.error) for f in report.failures],
            error_column=5,
        ),
        expiring_days=report.expiring_days,
        expiring_count=len(report.expiring),
        expiry_chart=bar_chart(
            [m.month for m in months],
            [m.count for m in months],
            "Active certificates expiring per month, the coming 12 months",
        ),
        expiring=_table(
            ["expires", "days left", "user", "generation"],
            [(e.expires, e.days_left, e.email, e.generation) for e in report.expiring],
        ),
        change_counts=escape(
            ", ".join(f"{kind}: {len(report.changes[kind])}" for kind in CHANGE_KINDS)
        ),
        changes=_table(["at", "change", "user"], changes),
        reasons=_table(
            ["action", "code", "count"], [(r.action, r.code, r.count) for r in report.reasons]
        ),
        passes=_table(
            ["run", "kind", "started", "seconds", "outcome", "done", "failed"],
            [
                (p.id, p.kind, p.started_at, p.duration_seconds, p.outcome, p.done, p.failed)
                for p in report.passes
            ],
        ),
    )
