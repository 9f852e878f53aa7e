"""Changes since the previous report (runs of kind ``report``), --since-days, and --fail-on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.plan import ActionKind
from syncd.state.models import Run

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


def test_fail_on_records_alerts(store: Store) -> None:
    assert store.syncd("report", "--fail-on", "failures>0").returncode == 1
    database = store.database()
    with database.sessions() as session:
        assert [r.outcome for r in session.query(Run).filter(Run.kind == "report")] == ["alerts"]
    database.close()


def test_bad_conditions_are_usage_errors(store: Store) -> None:
    for condition, message in [
        ("failures=0", "'failures=0' is not a condition; write METRIC OP NUMBER"),
        ("speed>3", "unknown metric 'speed'; use one of failures, coverage, expiring, pending"),
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
