"""The report as one JSON document: the stable shape documented in docs/cli.md.

Keys are only ever added (``version`` changes if one is removed or changes meaning).
Times are ISO 8601 UTC with a ``Z``; absent values are ``null``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from syncd.output import to_json
from syncd.report.model import REPORT_VERSION, Report


def to_document(report: Report) -> dict[str, Any]:
    return {
        "report": {
            "version": REPORT_VERSION,
            "generated_at": report.generated_at,
            "expiring_days": report.expiring_days,
            "changes_since": report.changes_since,
            "changes_since_source": report.changes_since_source,
            "coverage": asdict(report.coverage),
            "failures": [asdict(f) for f in report.failures],
            "expiring": [asdict(e) for e in report.expiring],
            "changes": {
                kind: [asdict(c) for c in rows] for kind, rows in report.changes.items()
            },
            "passes": [asdict(p) for p in report.passes],
            "expiry_by_month": [asdict(m) for m in report.expiry_by_month],
            "coverage_history": [asdict(p) for p in report.coverage_history],
            "blocked_deprovisions": asdict(report.blocked),
            "key_format": {
                "configured": report.key_format,
                "other": [asdict(k) for k in report.other_key_format],
            },
            "drift": asdict(report.drift),
            "reasons": [asdict(r) for r in report.reasons],
        }
    }


def render_json(report: Report) -> str:
    return to_json(to_document(report)) + "\n"
