"""The plan's rules and safety limits (pure: no servers needed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from syncd.directory.base import DirectoryUser, SkippedEntry, Snapshot, SourceError
from syncd.plan import (
    ActionKind,
    CredentialView,
    Policy,
    TaskView,
    UserView,
    deprovision_limit,
    format_duration,
    on_demand,
    plan,
)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
IMMEDIATE = timedelta(0)
"""No deprovision grace period: the tests of deprovisioning itself act at the first read."""
POLICY = Policy(renew_before=timedelta(days=30), max_deprovision="10%", deprovision_after=IMMEDIATE)


def snap(*users: DirectoryUser) -> Snapshot:
    return Snapshot("static", NOW, users)


def listed(email: str, enabled: bool = True) -> DirectoryUser:
    return DirectoryUser(email, f"id-{email}", enabled)


def provisioned(email: str, expires_in_days: int = 300) -> UserView:
    return UserView(
        email,
        f"id-{email}",
        True,
        active=CredentialView(1, NOW + timedelta(days=expires_in_days)),
        holds_credentials=True,
    )


def task(
    kind: str, status: str, step: str = "upload_keypair", due: datetime | None = None
) -> TaskView:
    return TaskView(kind, status, step, 3, due, "503 backendError")


def kinds(result_plan: object) -> dict[str, str]:
    return {a.email: a.kind.value for a in result_plan.actions}  # type: ignore[attr-defined]


def test_new_users_are_provisioned_and_provisioned_users_left_alone() -> None:
    result = plan(snap(listed("a@x.com"), listed("b@x.com")), [provisioned("b@x.com")], POLICY, NOW)
    assert kinds(result) == {"a@x.com": "provision"}
    assert result.actions[0].reason == "new in scope"
    assert result.actions[0].directory_id == "id-a@x.com"


def test_unfinished_and_failed_tasks() -> None:
    views = [
        UserView("r@x.com", "id-r@x.com", True, open_task=task("provision", "running")),
        UserView("f@x.com", "id-f@x.com", True, open_task=task("provision", "failed", due=NOW)),
        UserView(
            "w@x.com",
            "id-w@x.com",
            True,
            open_task=task("provision", "failed", due=NOW + timedelta(hours=1)),
        ),
    ]
    result = plan(snap(listed("r@x.com"), listed("f@x.com"), listed("w@x.com")), views, POLICY, NOW)
    assert kinds(result) == {"r@x.com": "resume", "f@x.com": "retry"}
    assert "interrupted at upload_keypair" in result.actions[1].reason
    assert [h.email for h in result.held] == ["w@x.com"]
    assert "next try after" in result.held[0].reason and "503" in result.held[0].reason


def test_left_scope_and_disabled_are_deprovisioned() -> None:
    views = [provisioned(f"u{i}@x.com") for i in range(20)]
    directory = [listed(f"u{i}@x.com") for i in range(18)]
    directory[0] = listed("u0@x.com", enabled=False)
    result = plan(snap(*directory), views, POLICY, NOW)  # 3 > 10% of 20 = 2: blocked
    assert {a.email for a in result.blocked_deprovisions} == {"u0@x.com", "u18@x.com", "u19@x.com"}
    assert result.blocked_reason is not None
    assert "3 of 20 managed users" in result.blocked_reason
    assert "--allow-mass-deprovision" in result.blocked_reason
    assert kinds(result) == {}

    allowed = Policy(POLICY.renew_before, "10%", True, deprovision_after=IMMEDIATE)
    forced = plan(snap(*directory), views, allowed, NOW)
    assert kinds(forced) == {
        "u0@x.com": "deprovision",
        "u18@x.com": "deprovision",
        "u19@x.com": "deprovision",
    }
    assert {a.reason for a in forced.actions} == {
        "disabled or suspended in the directory",
        "no longer in the directory scope",
    }


def test_within_the_limit_deprovisions_happen() -> None:
    views = [provisioned(f"u{i}@x.com") for i in range(20)]
    directory = [listed(f"u{i}@x.com") for i in range(18)]
    result = plan(snap(*directory), views, POLICY, NOW)
    assert kinds(result) == {"u18@x.com": "deprovision", "u19@x.com": "deprovision"}
    assert result.blocked_reason is None


def test_a_directory_dropping_sixty_percent_deprovisions_nobody() -> None:
    views = [provisioned(f"u{i}@x.com") for i in range(50)]
    result = plan(snap(*(listed(f"u{i}@x.com") for i in range(20))), views, POLICY, NOW)
    assert result.actions == ()
    assert len(result.blocked_deprovisions) == 30


def test_an_empty_directory_is_a_source_failure() -> None:
    with pytest.raises(SourceError, match="returned no users while syncd manages 2"):
        plan(snap(), [provisioned("a@x.com"), provisioned("b@x.com")], POLICY, NOW)
    assert plan(snap(), [], POLICY, NOW).actions == ()


def test_deprovision_wins_over_an_unfinished_provision() -> None:
    view = UserView("a@x.com", "id-a@x.com", True, open_task=task("provision", "running"))
    result = plan(
        snap(listed("b@x.com")),
        [view, provisioned("b@x.com")],
        Policy(timedelta(days=30), "5", deprovision_after=IMMEDIATE),
        NOW,
    )
    assert kinds(result) == {"a@x.com": "deprovision"}


def test_unfinished_deprovision_is_resumed_even_if_the_user_returned() -> None:
    view = UserView(
        "a@x.com",
        "id-a@x.com",
        True,
        holds_credentials=True,
        open_task=task("deprovision", "running", step="disable_keypairs"),
    )
    result = plan(snap(listed("a@x.com")), [view], POLICY, NOW)
    assert kinds(result) == {"a@x.com": "resume"}


def test_users_without_anything_to_undo_are_not_deprovisioned() -> None:
    gone = UserView("a@x.com", "id-a@x.com", False)
    assert plan(snap(listed("b@x.com")), [gone], POLICY, NOW).actions[0].email == "b@x.com"


def test_renewal_before_expiry() -> None:
    soon, later = provisioned("s@x.com", expires_in_days=29), provisioned("l@x.com", 31)
    result = plan(snap(listed("s@x.com"), listed("l@x.com")), [soon, later], POLICY, NOW)
    assert kinds(result) == {"s@x.com": "renew"}
    assert "expires 2026-12-29" in result.actions[0].reason


def test_returning_user_is_provisioned_again() -> None:
    returned = UserView("a@x.com", "id-a@x.com", False)
    result = plan(snap(listed("a@x.com")), [returned], POLICY, NOW)
    assert [(a.kind, a.reason) for a in result.actions] == [
        (ActionKind.PROVISION, "in scope without a credential")
    ]


@pytest.mark.parametrize(
    ("setting", "active", "limit"), [("10%", 20, 2), ("10%", 5, 0), ("25", 3, 25), ("100%", 7, 7)]
)
def test_deprovision_limit(setting: str, active: int, limit: int) -> None:
    assert deprovision_limit(setting, active) == limit


def test_on_demand_actions() -> None:
    views = [provisioned("a@x.com")]
    repair, unknown = on_demand(["a@x.com", "z@x.com"], views, force=False)
    assert [(a.email, a.kind) for a in repair] == [("a@x.com", ActionKind.REPAIR)]
    assert unknown == ["z@x.com"]
    replace, _ = on_demand(["a@x.com"], views, force=True)
    assert replace[0].kind is ActionKind.REPLACE and replace[0].task_kind == "replace"


GRACE = Policy(timedelta(days=30), "100%", deprovision_after=timedelta(hours=1))


def test_a_user_named_by_an_unusable_entry_keeps_their_state() -> None:
    views = [provisioned(f"u{i}@x.com") for i in range(5)]
    bad_enabled = SkippedEntry(
        "users.yaml entry 1",
        "enabled must be true or false, not 'maybe'",
        "u0@x.com",
        "id-u0@x.com",
    )
    by_id_only = SkippedEntry("users.yaml entry 2", "invalid email 'u1@'", None, "id-u1@x.com")
    duplicate = SkippedEntry("users.yaml entry 9", "duplicate email u2@x.com", "u2@x.com", "z")
    snapshot = Snapshot(
        "static",
        NOW,
        (listed("u2@x.com"), listed("u3@x.com")),
        (bad_enabled, by_id_only, duplicate),
    )
    no_grace = Policy(timedelta(days=30), "100%", deprovision_after=IMMEDIATE)
    result = plan(snapshot, views, no_grace, NOW)  # u4 alone is deprovisioned
    assert kinds(result) == {"u4@x.com": "deprovision"}
    assert {h.email: h.reason for h in result.held} == {
        "u0@x.com": "directory entry unusable: users.yaml entry 1: enabled must be true or "
        "false, not 'maybe'; keeping current state",
        "u1@x.com": "directory entry unusable: users.yaml entry 2: invalid email 'u1@'; "
        "keeping current state",
    }
    assert result.kept_in_scope == {"u0@x.com", "u1@x.com"}
    assert result.skipped_entries == 3


def test_a_missing_user_is_deprovisioned_only_after_the_grace_period() -> None:
    def missing(email: str, since: datetime | None) -> UserView:
        return replace(provisioned(email), missing_since=since)

    views = [
        missing("first@x.com", None),  # this is the first read that misses them
        missing("recent@x.com", NOW - timedelta(minutes=59)),
        missing("gone@x.com", NOW - timedelta(hours=1)),
        provisioned("disabled@x.com"),
        provisioned("here@x.com"),
    ]
    directory = snap(listed("disabled@x.com", enabled=False), listed("here@x.com"))
    result = plan(directory, views, GRACE, NOW)
    assert kinds(result) == {"gone@x.com": "deprovision", "disabled@x.com": "deprovision"}
    assert {h.email: h.reason for h in result.held} == {
        "first@x.com": "not in the directory: missing since 2026-11-30 12:00Z, deprovision "
        "after 1h (at 2026-11-30 13:00Z)",
        "recent@x.com": "not in the directory: missing since 2026-11-30 11:01Z, deprovision "
        "after 1h (at 2026-11-30 12:01Z)",
    }
    assert result.kept_in_scope == {"first@x.com", "recent@x.com"}


def test_blocked_deprovisions_stay_in_scope() -> None:
    views = [provisioned(f"u{i}@x.com") for i in range(20)]
    result = plan(snap(*(listed(f"u{i}@x.com") for i in range(17))), views, POLICY, NOW)
    assert result.blocked_reason is not None and "3 of 20 managed users" in result.blocked_reason
    assert result.kept_in_scope == {"u17@x.com", "u18@x.com", "u19@x.com"}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (3600, "1h"), (5400, "1h30m"), (172800, "2d")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
