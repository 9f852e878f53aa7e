"""The report's drift parts (pure): a user with drift is not covered, and drifts found and
repaired in the changes window are counted, a repair once for the drift before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.report.drift import DRIFT_FOUND, Drifted, DriftEventRow, summarize
from syncd.report.model import UserRow, coverage, drifting
from syncd.report.thresholds import evaluate, parse_condition

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)


def _user(name: str, **fields: object) -> UserRow:
    values: dict[str, object] = {
        "email": f"{name}@example.com",
        "state": "active",
        "in_scope": True,
        "enabled": True,
        "generation": 1,
        "certificate_expires": NOW + timedelta(days=100),
        "task": None,
        "step": None,
        "attempts": 0,
        "last_error": None,
        "next_attempt": None,
    }
    values.update(fields)
    return UserRow(**values)  # type: ignore[arg-type]


def test_a_user_with_drift_is_not_covered() -> None:
    users = [
        _user("whole"),
        _user("gone", drift="drift_identity_missing", drift_detail="identity not found"),
        _user("off", enabled=False, drift="drift_keypair_disabled"),  # not eligible
    ]
    result = coverage(users)
    assert (result.eligible, result.covered, result.drift, result.not_covered) == (2, 1, 1, 1)
    assert result.percent_covered == 50.0
    blocked = coverage(users, ["gone@example.com"])  # blocked counts once, as blocked
    assert (blocked.covered, blocked.blocked, blocked.drift) == (1, 1, 0)
    assert drifting(users) == [
        Drifted("gone@example.com", "drift_identity_missing", "identity not found", None)
    ]


def _event(email: str, action: str, days_ago: float, code: str | None = None) -> DriftEventRow:
    return DriftEventRow(email, action, NOW - timedelta(days=days_ago), code)


def test_found_and_repaired_in_the_window() -> None:
    events = [
        # found before the window, repaired in it: repaired, not found
        _event("a", DRIFT_FOUND, 9, "drift_keypair_disabled"),
        _event("a", "repair.done", 6),
        # found and repaired in the window, twice
        _event("b", DRIFT_FOUND, 5, "drift_identity_missing"),
        _event("b", "repair.done", 4.9),
        _event("b", DRIFT_FOUND, 2, "drift_identity_missing"),
        _event("b", "repair.done", 1.9),
        # a repair with no drift before it (syncd resync of a whole user): not counted
        _event("c", "repair.done", 3),
        # found, replaced (KMS key revoked), then a later repair: one repaired
        _event("d", DRIFT_FOUND, 1, "drift_kms_key_revoked"),
        _event("d", "replace.done", 0.9),
        _event("d", "repair.done", 0.5),
        # found, not repaired yet
        _event("e", DRIFT_FOUND, 0.1, "drift_keypair_disabled"),
    ]
    now = [Drifted("e", "drift_keypair_disabled", None, NOW)]
    result = summarize(now, events, SINCE)
    assert (result.found, result.repaired) == (4, 4)
    assert result.found_by_code == {
        "drift_identity_missing": 2,
        "drift_keypair_disabled": 1,
        "drift_kms_key_revoked": 1,
    }
    assert result.users == now
    assert summarize([], [], SINCE).found == 0


def test_fail_on_drift() -> None:
    condition = parse_condition("drift>0")
    (check,) = evaluate([condition], {"drift": 2.0})
    assert check.holds and check.reason == "drift>0 holds: drift is 2"
