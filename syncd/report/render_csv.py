"""The report as one CSV table for spreadsheets: one row per fact, a ``section`` column first.

Columns: ``section, user, item, at, value, detail``. Sections and what the columns hold:

- ``coverage``: item = the count's name (``covered``, ``percent_covered``...), value = it;
- ``failure``: user, item = ``task/step``, at = failing since, value = attempts, detail = error;
- ``expiring``: user, item = ``generation N``, at = expiry, value = days left;
- ``change``: user, item = provisioned | renewed | deprovisioned, at = when;
- ``pass``: item = ``<kind> run <id>``, at = start, value = seconds, detail = outcome;
- ``blocked``: user, item = ``deprovision blocked``, at = the pass, value = its run id,
  detail = why;
- ``drift``: user, item = the drift's reason code, at = when found, detail = what was found
  (users not covered until repaired); then item = ``found`` and ``repaired``, value = how many
  since ``changes_since``.
- ``reason``: item = ``<action>/<reason code>``, at = since when, value = how many the passes
  planned.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any

from syncd.report.model import CHANGE_KINDS, Report

HEADER = ("section", "user", "item", "at", "value", "detail")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _rows(report: Report) -> Iterator[tuple[Any, ...]]:
    for name, value in asdict(report.coverage).items():
        yield "coverage", None, name, report.generated_at, value, None
    for f in report.failures:
        yield "failure", f.email, f"{f.task}/{f.step}", f.since, f.attempts, f.error
    for e in report.expiring:
        yield "expiring", e.email, f"generation {e.generation}", e.expires, e.days_left, None
    for kind in CHANGE_KINDS:
        for c in report.changes[kind]:
            yield "change", c.email, kind, c.at, None, None
    for p in report.passes:
        yield "pass", None, f"{p.kind} run {p.id}", p.started_at, p.duration_seconds, p.outcome
    refused = report.blocked
    for email in refused.users:
        yield "blocked", email, "deprovision blocked", refused.at, refused.run_id, refused.reason
    for d in report.drift.users:
        yield "drift", d.email, d.code, d.found, None, d.detail
    yield "drift", None, "found", report.changes_since, report.drift.found, None
    yield "drift", None, "repaired", report.changes_since, report.drift.repaired, None
    for r in report.reasons:
        yield "reason", None, f"{r.action}/{r.code}", report.changes_since, r.count, None


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row in _rows(report):
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()
