"""Changes since the previous report (runs of kind ``report``), --since-days, and --fail-on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.plan import ActionKind
from syncd.report.service import make_report
from syncd.state import audit
from syncd.state.models import Run
from syncd.state.runs import finish_run, start_run

from .conftest import Filler, Store, email


def _report(store: Store, *args: str) -> dict[str, Any]:
    done = store.syncd("report", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)["report"]
    return report


def _provisioned(report: dict[str, Any]) -> list[str]:
    changes = report["changes"]
    assert isinstance(changes, dict)
    return sorted(c["email"] for c in changes["provisioned"])


def test_changes_since_the_previous_report(store: Store) -> None:
    first = _report(store)
    assert first["changes_since_source"] == "default"
    assert len(_provisioned(first)) == 9
    database = store.database()
    with database.sessions() as session:
        [run] = session.query(Run).filter(Run.kind == "report").all()
        assert run.outcome == "ok"
        assert run.summary["percent_covered"] == 70.0
        assert run.finished_at is not None
        assert run.finished_at.isoformat().replace("+00:00", "Z") == first["generated_at"]
    # p1's pending provision completes after the first report.
    with database.sessions() as session:
        run_id = session.query(Run.id).filter(Run.kind == "sync").scalar()
    filler = Filler(database, run_id)
    task_id = filler.enqueue("p1", ActionKind.RESUME, "provision")
    filler.run(task_id, not_after=datetime.now(UTC) + timedelta(days=365))
    database.close()

    # --no-record: looks, but does not move the window.
    looked = _report(store, "--no-record")
    assert looked["changes_since"] == first["generated_at"]
    assert looked["changes_since_source"] == "previous_report"
    assert _provisioned(looked) == [email("p1")]

    second = _report(store)
    assert _provisioned(second) == [email("p1")]
    coverage = second["coverage"]
    assert isinstance(coverage, dict) and coverage["covered"] == 8
    history = second["coverage_history"]
    assert [p["percent_covered"] for p in history] == [70.0, 80.0]

    third = _report(store)
    assert third["changes_since"] == second["generated_at"]
    assert _provisioned(third) == []
    wider = _report(store, "--since-days", "1", "--no-record")
    assert wider["changes_since_source"] == "since_days"
    assert len(_provisioned(wider)) == 10
    assert [p["percent_covered"] for p in wider["coverage_history"]] == [70.0, 80.0, 80.0, 80.0]


def test_fail_on_conditions(store: Store) -> None:
    held = store.syncd(
        "report", "--no-record", "--fail-on", "failures>0", "--fail-on", "coverage<99",
        "--fail-on", "expiring>=4", "--fail-on", "pending==1",
    )
    assert held.returncode == 1
    assert held.stderr.splitlines() == [
        "syncd: fail-on failures>0 holds: failures is 2",
        "syncd: fail-on coverage<99 holds: coverage is 70",
        "syncd: fail-on pending==1 holds: pending is 1",
    ]
    assert held.stdout.startswith("syncd report, ")  # the report is still printed
    fine = store.syncd(
        "report", "--no-record", "--fail-on", "failures>2", "--fail-on", "coverage<=69.9",
        "--fail-on", "expiring>3",
    )
    assert fine.returncode == 0, fine.stderr
    assert "fail-on" not in fine.stderr


BLOCKED_REASON = (
    "3 of 10 managed users would be deprovisioned, more than policy.max_deprovision "
    "(10% = 1); nobody was deprovisioned"
)


def _blocked_pass(store: Store, users: list[str]) -> None:
    """A sync pass that blocked deprovisions, recorded as sync_pass records one."""
    database = store.database()
    with database.transaction() as session:
        now = datetime.now(UTC)
        run_id = start_run(session, "sync", now)
        audit.record(
            session, "pass.deprovision_blocked", run_id=run_id, reason=BLOCKED_REASON, users=users
        )
        finish_run(session, run_id, "blocked", now, {"done": 0, "blocked_deprovisions": 3})
    database.close()


def test_blocked_deprovisions_are_a_problem(store: Store) -> None:
    # a4 and a5 are still in scope and active; gone left the scope long ago (deprovisioned).
    _blocked_pass(store, [email("a4"), email("a5"), email("gone")])
    report = _report(store, "--no-record")
    assert report["blocked_deprovisions"]["users"] == [email("a4"), email("a5")]
    assert report["blocked_deprovisions"]["reason"] == BLOCKED_REASON
    coverage = report["coverage"]
    assert (coverage["blocked"], coverage["covered"], coverage["percent_covered"]) == (2, 5, 50.0)

    alert = store.syncd("report", "--no-record", "--fail-on", "blocked>0")
    assert alert.returncode == 1
    assert alert.stderr.splitlines() == ["syncd: fail-on blocked>0 holds: blocked is 2"]
    assert "Deprovisions blocked (2)\n========================\npass " in alert.stdout
    assert BLOCKED_REASON in alert.stdout

    # A later pass that read the directory and blocked nothing clears the problem; one that
    # could not read it (no plan) does not.
    database = store.database()
    with database.transaction() as session:
        failed = start_run(session, "sync", datetime.now(UTC))
        finish_run(session, failed, "source_failed", datetime.now(UTC), {"error": "LDAP down"})
    assert make_report(database, datetime.now(UTC), 30, None).coverage.blocked == 2
    with database.transaction() as session:
        fine = start_run(session, "sync", datetime.now(UTC))
        finish_run(session, fine, "ok", datetime.now(UTC), {"done": 0, "blocked_deprovisions": 0})
    assert make_report(database, datetime.now(UTC), 30, None).coverage.blocked == 0
    database.close()


def test_fail_on_records_alerts(store: Store) -> None:
    assert store.syncd("report", "--fail-on", "failures>0").returncode == 1
    database = store.database()
    with database.sessions() as session:
        assert [r.outcome for r in session.query(Run).filter(Run.kind == "report")] == ["alerts"]
    database.close()


def test_bad_conditions_are_usage_errors(store: Store) -> None:
    for condition, message in [
        ("failures=0", "'failures=0' is not a condition; write METRIC OP NUMBER"),
        (
            "speed>3",
            "unknown metric 'speed'; use one of failures, coverage, expiring, pending, blocked",
        ),
        ("coverage<lots", "'coverage<lots' is not a condition"),
    ]:
        done = store.syncd("report", "--no-record", "--fail-on", condition)
        assert done.returncode == 2, condition
        assert done.stderr.startswith(f"syncd: --fail-on: {message}"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stdout == ""
    assert store.syncd("report", "--expiring-days", "0").returncode == 2


def test_window_is_exact(store: Store) -> None:
    report = _report(store, "--since-days", "3", "--no-record")
    generated = datetime.fromisoformat(str(report["generated_at"]).replace("Z", "+00:00"))
    since = datetime.fromisoformat(str(report["changes_since"]).replace("Z", "+00:00"))
    assert generated - since == timedelta(days=3)
