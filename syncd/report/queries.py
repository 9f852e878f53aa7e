"""Reading what a report is built from: plain rows out of the state store, nothing decided here.

Per-user state comes from :func:`syncd.state.queries.user_status` (the same view as
``syncd status``); this module adds who was deprovisioned, since when failed tasks fail, the
drift found on active credentials (and the audit events of drifts found and repaired), the
change events, the last passes, the earlier reports (runs of kind ``report``) and the
deprovisions the last planning sync pass blocked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from syncd.domain import KeyPairStatus, TaskStatus
from syncd.report.drift import DRIFT_FOUND, REPAIRS, DriftEventRow
from syncd.report.model import (
    BlockedRow,
    EventRow,
    Inputs,
    KeyFormatRow,
    ReasonCount,
    RunRow,
    UserRow,
)
from syncd.state.models import AuditEvent, KeyPair, Run, Task, User
from syncd.state.queries import key_pairs_in_other_format, user_status

REPORT_RUN_KIND = "report"
PASS_KINDS = ("sync", "resync")
CHANGE_ACTIONS = ("provision.done", "renew.done", "replace.done", "deprovision.done")
PASSES_SHOWN = 10
HISTORY_POINTS = 90
BLOCKED_EVENT = "pass.deprovision_blocked"
PLANNING_RUNS_SEARCHED = 50
"""How far back to look for the last sync pass that planned (one that failed to read the
directory did not)."""


def _failing_since(session: Session) -> dict[str, datetime]:
    """For each user whose task failed: the first failure of that task (from the audit log)."""
    rows = session.execute(
        select(User.email, func.min(AuditEvent.at))
        .join(Task, Task.user_id == User.id)
        .join(AuditEvent, AuditEvent.user_id == User.id)
        .where(
            Task.status == TaskStatus.FAILED,
            AuditEvent.action.like("%.failed"),
            AuditEvent.at >= Task.created_at,
        )
        .group_by(User.email)
    )
    return {email: at for email, at in rows}


_NO_DRIFT: tuple[str | None, str | None, datetime | None] = (None, None, None)


def _drift(session: Session) -> dict[str, tuple[str | None, str | None, datetime | None]]:
    """For each user whose active key pair has drift: (code, detail, when it was found)."""
    rows = session.execute(
        select(User.email, KeyPair.drift, KeyPair.drift_detail, KeyPair.verified_at)
        .join(KeyPair, KeyPair.user_id == User.id)
        .where(KeyPair.status == KeyPairStatus.ACTIVE, KeyPair.drift.is_not(None))
    )
    return {email: (code, detail, at) for email, code, detail, at in rows}


def _drift_events(session: Session) -> list[DriftEventRow]:
    """Every drift found, and the repairs and replacements of the users it was found for
    (drift is rare: the audit log holds a drift event only when one was found)."""
    found = list(
        session.execute(
            select(AuditEvent.email, AuditEvent.at, AuditEvent.detail).where(
                AuditEvent.action == DRIFT_FOUND, AuditEvent.email.is_not(None)
            )
        )
    )
    if not found:
        return []
    first = min(at for _, at, _ in found)
    emails = sorted({str(email) for email, _, _ in found})
    repairs = session.execute(
        select(AuditEvent.email, AuditEvent.action, AuditEvent.at).where(
            AuditEvent.action.in_(REPAIRS),
            AuditEvent.at >= first,
            AuditEvent.email.in_(emails),
        )
    )
    return [
        DriftEventRow(str(email), DRIFT_FOUND, at, str((detail or {}).get("drift") or "") or None)
        for email, at, detail in found
    ] + [DriftEventRow(str(email), action, at) for email, action, at in repairs]


def _users(session: Session) -> list[UserRow]:
    deprovisioned = set(
        session.scalars(select(User.email).where(User.deprovisioned_at.is_not(None)))
    )
    since = _failing_since(session)
    drift = _drift(session)
    return [
        UserRow(
            email=row["email"],
            state=row["state"],
            in_scope=row["in_scope"],
            enabled=row["enabled"],
            generation=row["generation"],
            certificate_expires=row["certificate_expires"],
            task=row["task"],
            step=row["step"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            next_attempt=row["next_attempt"],
            deprovisioned=row["email"] in deprovisioned,
            failing_since=since.get(row["email"]),
            drift=drift.get(row["email"], _NO_DRIFT)[0],
            drift_detail=drift.get(row["email"], _NO_DRIFT)[1],
            drift_found_at=drift.get(row["email"], _NO_DRIFT)[2],
        )
        for row in user_status(session)
    ]


def _run_row(run: Run) -> RunRow:
    return RunRow(run.id, run.kind, run.started_at, run.finished_at, run.outcome, run.summary or {})


def previous_report_at(session: Session) -> datetime | None:
    """When the last recorded report was made (None before the first)."""
    return session.scalar(
        select(func.max(Run.finished_at)).where(
            Run.kind == REPORT_RUN_KIND, Run.finished_at.is_not(None)
        )
    )


def _blocked(session: Session) -> BlockedRow | None:
    """The blocked deprovisions of the last sync pass that planned (its summary counts them)."""
    runs = session.scalars(
        select(Run)
        .where(Run.kind == "sync", Run.finished_at.is_not(None))
        .order_by(Run.started_at.desc(), Run.id.desc())
        .limit(PLANNING_RUNS_SEARCHED)
    )
    planned = next((run for run in runs if "blocked_deprovisions" in (run.summary or {})), None)
    if planned is None or not planned.summary["blocked_deprovisions"]:
        return None
    event = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.run_id == planned.id, AuditEvent.action == BLOCKED_EVENT)
        .order_by(AuditEvent.id)
    ).first()
    if event is None:
        return None
    users = event.detail.get("users") or []
    return BlockedRow(
        planned.id, event.at, str(event.detail.get("reason", "")), tuple(str(u) for u in users)
    )


def _reasons(session: Session, since: datetime) -> list[ReasonCount]:
    """``plan.*`` audit events after ``since``, counted by action and reason code (``none``:
    an event recorded before codes were)."""
    code = func.coalesce(AuditEvent.detail["code"].as_string(), "none")
    rows = session.execute(
        select(AuditEvent.action, code, func.count())
        .where(AuditEvent.action.like("plan.%"), AuditEvent.at > since)
        .group_by(AuditEvent.action, code)
    )
    return [ReasonCount(action.removeprefix("plan."), str(c), int(n)) for action, c, n in rows]


def read_inputs(session: Session, changes_since: datetime, key_format: str = "pkcs1") -> Inputs:
    events = session.execute(
        select(AuditEvent.email, AuditEvent.action, AuditEvent.at)
        .where(
            AuditEvent.action.in_(CHANGE_ACTIONS),
            AuditEvent.at > changes_since,
            AuditEvent.email.is_not(None),
        )
        .order_by(AuditEvent.at, AuditEvent.id)
    )
    runs = session.scalars(
        select(Run)
        .where(Run.kind.in_(PASS_KINDS))
        .order_by(Run.started_at.desc(), Run.id.desc())
        .limit(PASSES_SHOWN)
    )
    reports = session.scalars(
        select(Run)
        .where(Run.kind == REPORT_RUN_KIND, Run.finished_at.is_not(None))
        .order_by(Run.finished_at.desc(), Run.id.desc())
        .limit(HISTORY_POINTS)
    )
    return Inputs(
        reasons=_reasons(session, changes_since),
        users=_users(session),
        events=[EventRow(str(email), action, at) for email, action, at in events],
        passes=[_run_row(run) for run in runs],
        previous_reports=[_run_row(run) for run in reversed(list(reports))],
        blocked=_blocked(session),
        key_format=key_format,
        other_key_format=[
            KeyFormatRow(**row) for row in key_pairs_in_other_format(session, key_format)
        ],
        drift_events=_drift_events(session),
    )
