"""The plan's rules and safety limits (pure: no servers needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.directory.base import DirectoryUser, Snapshot, SourceError
from syncd.plan import (
    ActionKind,
    CredentialView,
    Policy,
    TaskView,
    UserView,
    deprovision_limit,
    on_demand,
    plan,
)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
POLICY = Policy(renew_before=timedelta(days=30), max_deprovision="10%")


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

    allowed = Policy(POLICY.renew_before, "10%", allow_mass_deprovision=True)
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
        Policy(timedelta(days=30), "5"),
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
