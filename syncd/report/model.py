"""The report model: plain data built by pure functions from rows read from the state store.

Definitions (docs/cli.md, "syncd report"):

- *eligible*: users in scope and enabled in the directory;
- *blocked*: users in scope whose deprovision the last planning sync pass blocked (more than
  ``policy.max_deprovision``); they keep their credentials, and the directory says they should
  not: a problem, never "covered";
- *covered*: eligible users with an active identity (an ACTIVE key pair), blocked users
  and users with drift excepted; ``percent_covered`` = covered / (eligible users and blocked
  users) x 100 (100.0 when there are none), so a blocked pass lowers coverage;
- *drift*: eligible users whose active credential the last verification found changed
  outside syncd (identity deleted or re-pointed, key pair disabled or gone, KMS key revoked):
  not covered until repaired. *Drift found* counts the verifications that found drift after
  ``changes_since`` (``verify.verify_credential`` audit events, written only on drift);
  *drift repaired* the repairs or replacements that finished after a drift was found for the
  user, after ``changes_since``;
- *pending*: users with an unfinished task that has not failed; *failed*: users whose task
  failed (retried later). A renewing user is covered and pending at once: the counts overlap;
- *deprovisioned*: users syncd deprovisioned who have no active key pair since;
- *expiring*: active certificates whose ``not_after`` falls before now + ``expiring_days``
  (already expired ones included, with a negative ``days_left``);
- *changes*: ``provision.done``, ``renew.done``/``replace.done`` and ``deprovision.done`` audit
  events after ``changes_since``;
- *reasons*: the actions sync passes planned after ``changes_since`` (``plan.*`` audit
  events), counted by kind and reason code (``syncd.domain.ReasonCode``);
- *other key format*: key pairs still in Gmail whose kaclsData holds the private key in another
  format than ``kacls.private_key_format`` (PKCS#8 ones from before syncd wrote PKCS#1).

Nothing here does I/O: :func:`build_report` is a function of its inputs and ``now``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from syncd.report.drift import Drift, Drifted, DriftEventRow, summarize

REPORT_VERSION = 1
MONTHS_AHEAD = 12
DEFAULT_SINCE_DAYS = 7
"""The changes window of the very first report (no earlier report run to start from)."""
CHANGE_KINDS = ("provisioned", "renewed", "deprovisioned")
_CHANGE_OF_ACTION = {
    "provision.done": "provisioned",
    "renew.done": "renewed",
    "replace.done": "renewed",
    "deprovision.done": "deprovisioned",
}


# --- inputs (rows as queried) ---------------------------------------------------------------


@dataclass(frozen=True)
class UserRow:
    """One user as :func:`syncd.state.queries.user_status` sees it, plus deprovisioning."""

    email: str
    state: str
    in_scope: bool
    enabled: bool
    generation: int | None
    certificate_expires: datetime | None
    task: str | None
    step: str | None
    attempts: int
    last_error: str | None
    next_attempt: datetime | None
    deprovisioned: bool = False
    failing_since: datetime | None = None
    drift: str | None = None
    """The reason code of the drift found on the active credential (None: none)."""
    drift_detail: str | None = None
    drift_found_at: datetime | None = None


@dataclass(frozen=True)
class EventRow:
    email: str
    action: str
    at: datetime


@dataclass(frozen=True)
class RunRow:
    id: int
    kind: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    summary: Mapping[str, Any]


@dataclass(frozen=True)
class BlockedRow:
    """The ``pass.deprovision_blocked`` event of the last planning sync pass."""

    run_id: int
    at: datetime
    reason: str
    users: tuple[str, ...]


@dataclass(frozen=True)
class KeyFormatRow:
    """A key pair in Gmail whose kaclsData is in another format than the configured one."""

    email: str
    generation: int
    status: str
    key_pair_id: str | None
    private_key_format: str
    certificate_expires: datetime | None


@dataclass(frozen=True)
class ReasonCount:
    """Plan decisions of one kind and reason code (``plan.*`` audit events) in the period."""

    action: str
    code: str
    count: int


@dataclass(frozen=True)
class Inputs:
    """Everything a report is built from."""

    users: Sequence[UserRow]
    events: Sequence[EventRow]
    """Change events (``*.done``) after ``changes_since``."""
    passes: Sequence[RunRow]
    """The latest sync/resync runs, newest first."""
    previous_reports: Sequence[RunRow]
    """Earlier report runs, oldest first (their summaries hold the coverage of the day)."""
    blocked: BlockedRow | None = None
    """Set when the last sync pass that planned blocked deprovisions."""
    key_format: str = "pkcs1"
    """``kacls.private_key_format``."""
    other_key_format: Sequence[KeyFormatRow] = ()
    """Key pairs in Gmail written in another format than ``key_format``."""
    drift_events: Sequence[DriftEventRow] = ()
    """Drifts found and repairs of the users with a drift found, oldest first."""
    reasons: Sequence[ReasonCount] = ()
    """The passes' planned actions after ``changes_since``, counted by kind and reason code."""


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    users_in_scope: int
    eligible: int
    covered: int
    pending: int
    failed: int
    not_covered: int
    disabled_in_scope: int
    deprovisioned: int
    percent_covered: float
    blocked: int = 0
    drift: int = 0


@dataclass(frozen=True)
class Failure:
    email: str
    task: str | None
    step: str | None
    error: str | None
    attempts: int
    since: datetime | None
    next_attempt: datetime | None


@dataclass(frozen=True)
class Blocked:
    """Deprovisions the last planning pass refused, and why (no users: none blocked)."""

    users: list[str]
    reason: str | None = None
    run_id: int | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Expiring:
    email: str
    generation: int | None
    expires: datetime
    days_left: int


@dataclass(frozen=True)
class Change:
    email: str
    at: datetime


@dataclass(frozen=True)
class Pass:
    id: int
    kind: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    outcome: str | None
    done: int | None
    failed: int | None


@dataclass(frozen=True)
class MonthCount:
    month: str  # YYYY-MM
    count: int


@dataclass(frozen=True)
class CoveragePoint:
    at: datetime
    percent_covered: float


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    expiring_days: int
    changes_since: datetime
    changes_since_source: str  # previous_report | since_days | default
    coverage: Coverage
    failures: list[Failure]
    expiring: list[Expiring]
    changes: dict[str, list[Change]]
    passes: list[Pass]
    expiry_by_month: list[MonthCount]
    coverage_history: list[CoveragePoint]
    blocked: Blocked = Blocked([])
    key_format: str = "pkcs1"
    other_key_format: list[KeyFormatRow] = field(default_factory=list)
    drift: Drift = field(default_factory=Drift)
    reasons: list[ReasonCount] = field(default_factory=list)
    """Actions planned since ``changes_since`` by kind and reason code, most frequent first."""

    def metrics(self) -> dict[str, float]:
        """The values ``--fail-on`` conditions test."""
        return {
            "failures": float(len(self.failures)),
            "coverage": self.coverage.percent_covered,
            "expiring": float(len(self.expiring)),
            "pending": float(self.coverage.pending),
            "blocked": float(self.coverage.blocked),
            "drift": float(len(self.drift.users)),
        }


# --- pure builders --------------------------------------------------------------------------


def blocked(users: Sequence[UserRow], row: BlockedRow | None) -> Blocked:
    """The blocked deprovisions of the last planning pass, for users still in scope."""
    if row is None:
        return Blocked([])
    in_scope = {u.email for u in users if u.in_scope}
    still = sorted(email for email in row.users if email in in_scope)
    if not still:
        return Blocked([])
    return Blocked(still, row.reason, row.run_id, row.at)


def coverage(users: Sequence[UserRow], blocked_users: Collection[str] = ()) -> Coverage:
    in_scope = [u for u in users if u.in_scope]
    eligible = [u for u in in_scope if u.enabled]
    held_back = {u.email for u in in_scope if u.email in blocked_users}
    drifting = {u.email for u in eligible if u.generation is not None and u.drift is not None}
    covered = sum(
        1
        for u in eligible
        if u.generation is not None and u.email not in held_back and u.email not in drifting
    )
    population = len({u.email for u in eligible} | held_back)
    percent = 100.0 if not population else round(100.0 * covered / population, 2)
    return Coverage(
        users_in_scope=len(in_scope),
        eligible=len(eligible),
        covered=covered,
        pending=sum(1 for u in users if u.task is not None and u.state != "failed"),
        failed=sum(1 for u in users if u.state == "failed"),
        not_covered=len(eligible) - covered,
        disabled_in_scope=len(in_scope) - len(eligible),
        deprovisioned=sum(1 for u in users if u.deprovisioned and u.generation is None),
        percent_covered=percent,
        blocked=len(held_back),
        drift=len(drifting - held_back),
    )


def drifting(users: Sequence[UserRow]) -> list[Drifted]:
    """Eligible users whose active credential has drift, by email."""
    return [
        Drifted(u.email, u.drift, u.drift_detail, u.drift_found_at)
        for u in sorted(users, key=lambda u: u.email)
        if u.in_scope and u.enabled and u.generation is not None and u.drift is not None
    ]


def failures(users: Sequence[UserRow]) -> list[Failure]:
    """Failed users, longest failing first."""
    rows = [
        Failure(u.email, u.task, u.step, u.last_error, u.attempts, u.failing_since, u.next_attempt)
        for u in users
        if u.state == "failed"
    ]
    return sorted(rows, key=lambda f: (f.since is None, f.since or datetime.min, f.email))


def expiring(users: Sequence[UserRow], now: datetime, days: int) -> list[Expiring]:
    """Active certificates expiring before ``now + days``, soonest first."""
    horizon = now + timedelta(days=days)
    rows = [
        Expiring(u.email, u.generation, expires, _days_left(expires, now))
        for u in users
        if u.generation is not None
        and (expires := u.certificate_expires) is not None
        and expires <= horizon
    ]
    return sorted(rows, key=lambda e: (e.expires, e.email))


def _days_left(expires: datetime, now: datetime) -> int:
    return round((expires - now) / timedelta(days=1))


def changes(events: Sequence[EventRow], since: datetime) -> dict[str, list[Change]]:
    """Provisioned, renewed and deprovisioned users after ``since``, oldest first."""
    grouped: dict[str, list[Change]] = {kind: [] for kind in CHANGE_KINDS}
    for event in sorted(events, key=lambda e: (e.at, e.email)):
        kind = _CHANGE_OF_ACTION.get(event.action)
        if kind is not None and event.at > since:
            grouped[kind].append(Change(event.email, event.at))
    return grouped


def _count(summary: Mapping[str, Any], key: str) -> int | None:
    value = summary.get(key)
    return value if isinstance(value, int) else None


def passes(runs: Sequence[RunRow]) -> list[Pass]:
    return [
        Pass(
            id=run.id,
            kind=run.kind,
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_seconds=round((run.finished_at - run.started_at).total_seconds(), 1)
            if run.finished_at is not None
            else None,
            outcome=run.outcome,
            done=_count(run.summary, "done"),
            failed=_count(run.summary, "failed"),
        )
        for run in runs
    ]


def _month_key(moment: datetime) -> tuple[int, int]:
    return moment.year, moment.month


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def expiry_by_month(
    users: Sequence[UserRow], now: datetime, months: int = MONTHS_AHEAD
) -> list[MonthCount]:
    """Active certificates expiring in each of the coming months (this month first).

    Certificates already expired count in the current month.
    """
    keys = [_add_months(now.year, now.month, offset) for offset in range(months)]
    counts = dict.fromkeys(keys, 0)
    for user in users:
        if user.generation is None or user.certificate_expires is None:
            continue
        key = max(_month_key(user.certificate_expires), keys[0])
        if key in counts:
            counts[key] += 1
    return [MonthCount(f"{year:04d}-{month:02d}", counts[(year, month)]) for year, month in keys]


def coverage_history(
    previous: Sequence[RunRow], now: datetime, current: Coverage
) -> list[CoveragePoint]:
    """Coverage at each earlier report (from its run summary), then now."""
    points = []
    for run in previous:
        value = run.summary.get("percent_covered")
        if isinstance(value, int | float):
            points.append(CoveragePoint(run.finished_at or run.started_at, float(value)))
    points.append(CoveragePoint(now, current.percent_covered))
    return points


def changes_window(
    now: datetime, since_days: int | None, previous_report_at: datetime | None
) -> tuple[datetime, str]:
    """Where "changes" start, and why: ``--since-days``, else the previous report, else 7 days."""
    if since_days is not None:
        return now - timedelta(days=since_days), "since_days"
    if previous_report_at is not None:
        return previous_report_at, "previous_report"
    return now - timedelta(days=DEFAULT_SINCE_DAYS), "default"


def build_report(
    inputs: Inputs,
    *,
    now: datetime,
    expiring_days: int,
    changes_since: datetime,
    changes_since_source: str,
) -> Report:
    refused = blocked(inputs.users, inputs.blocked)
    covered = coverage(inputs.users, refused.users)
    return Report(
        generated_at=now,
        expiring_days=expiring_days,
        changes_since=changes_since,
        changes_since_source=changes_since_source,
        coverage=covered,
        failures=failures(inputs.users),
        expiring=expiring(inputs.users, now, expiring_days),
        changes=changes(inputs.events, changes_since),
        passes=passes(inputs.passes),
        expiry_by_month=expiry_by_month(inputs.users, now),
        coverage_history=coverage_history(inputs.previous_reports, now, covered),
        blocked=refused,
        key_format=inputs.key_format,
        other_key_format=sorted(
            inputs.other_key_format, key=lambda row: (row.email, row.generation)
        ),
        drift=summarize(drifting(inputs.users), inputs.drift_events, changes_since),
        reasons=sorted(inputs.reasons, key=lambda r: (-r.count, r.action, r.code)),
    )


def run_summary(report: Report) -> dict[str, Any]:
    """What the report's own run row keeps: the next reports chart coverage from it."""
    return {
        "percent_covered": report.coverage.percent_covered,
        "eligible": report.coverage.eligible,
        "covered": report.coverage.covered,
        "failures": len(report.failures),
        "expiring": len(report.expiring),
        "pending": report.coverage.pending,
        "blocked": report.coverage.blocked,
        "other_key_format": len(report.other_key_format),
        "drift": len(report.drift.users),
    }
