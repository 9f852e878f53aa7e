"""The rollout throttle (syncd.plan.rollout): how many first credentials one pass makes, who
goes first (policy.rollout_order), and what is never deferred."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.domain import ActionKind, KeyPairStatus, ReasonCode, TaskKind, TaskStatus
from syncd.plan import (
    CredentialView,
    Policy,
    RetiredKeyPair,
    TaskView,
    UserView,
    plan,
)
from syncd.plan.rollout import matches, new_limit, tier

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


def policy(max_new: str | None = None, order: tuple[str, ...] = ()) -> Policy:
    return Policy(
        renew_before=timedelta(days=30),
        max_deprovision="100%",
        max_new_per_pass=max_new,
        rollout_order=order,
    )


def user(
    name: str, org_unit: str | None = None, *groups: str, enabled: bool = True
) -> DirectoryUser:
    return DirectoryUser(
        f"{name}@example.com", f"id-{name}", enabled, org_unit=org_unit, groups=groups
    )


def snapshot(*users: DirectoryUser) -> Snapshot:
    return Snapshot("static", NOW, users)


# new_limit


@pytest.mark.parametrize(
    ("setting", "eligible", "limit"),
    [
        (None, 100_000, None),
        ("500", 100_000, 500),
        ("1%", 100_000, 1000),
        ("10%", 6, 1),  # 0.6 rounded up
        ("1%", 0, 1),  # at least one when set
        ("0", 10, 1),
        ("100%", 7, 7),
    ],
)
def test_new_limit(setting: str | None, eligible: int, limit: int | None) -> None:
    assert new_limit(setting, eligible) == limit


# the order


@pytest.mark.parametrize(
    ("entry", "the_user", "named"),
    [
        ("/Pilot", user("a", "/Pilot"), True),
        ("/pilot/", user("a", "/Pilot/Team 1"), True),  # units under it, any case
        ("/Pilot", user("a", "/Pilots"), False),  # a prefix of the name is another unit
        ("/", user("a", "/Sales"), True),
        ("/Pilot", user("a"), False),  # no org unit known
        ("ou=Pilot,dc=example,dc=com", user("a", "ou=pilot, dc=example,dc=com"), True),
        ("ou=Pilot,dc=example,dc=com", user("a", "ou=Team,ou=Pilot,dc=example,dc=com"), True),
        ("ou=Pilot,dc=example,dc=com", user("a", "ou=CoPilot,dc=example,dc=com"), False),
        ("it@example.com", user("a", "/Sales", "IT@example.com"), True),
        ("cn=IT,ou=Groups,dc=x", user("a", None, "cn=it, ou=groups,dc=x"), True),
        ("it@example.com", user("a", "/Sales", "ops@example.com"), False),
    ],
)
def test_an_order_entry_names_org_units_under_it_and_groups(
    entry: str, the_user: DirectoryUser, named: bool
) -> None:
    assert matches(entry, the_user) is named


def test_tier_is_the_first_entry_naming_the_user() -> None:
    order = ("/Pilot", "it@example.com")
    assert tier(user("a", "/Pilot", "it@example.com"), order) == 0
    assert tier(user("a", "/Sales", "it@example.com"), order) == 1
    assert tier(user("a", "/Sales"), order) == 2
    assert tier(None, order) == 2


# the throttle in the plan


def test_no_limit_provisions_everyone() -> None:
    users = [user(n) for n in "abcdef"]
    result = plan(snapshot(*users), [], policy(), NOW)
    assert len(result.actions) == 6 and result.deferred_new == 0


def test_a_count_keeps_the_first_by_email_and_counts_the_rest() -> None:
    users = [user(n) for n in "fedcba"]
    result = plan(snapshot(*users), [], policy("2"), NOW)
    assert [a.email for a in result.actions] == ["a@example.com", "b@example.com"]
    assert {a.code for a in result.actions} == {ReasonCode.NEW_IN_SCOPE}
    assert result.deferred_new == 4
    assert result.held == ()  # counted, not one hold each


def test_a_percentage_is_of_the_enabled_users_listed() -> None:
    users = [user(f"u{n:03}") for n in range(200)]
    users += [user(f"x{n:03}", enabled=False) for n in range(100)]
    result = plan(snapshot(*users), [], policy("1%"), NOW)
    assert len(result.actions) == 2  # 1% of 200, not of 300
    assert result.deferred_new == 198


def test_order_tiers_go_first_then_everyone_by_email() -> None:
    users = [
        user("a", "/Sales"),
        user("b", "/IT"),
        user("c", "/Pilot/Team"),
        user("d", "/Sales", "early@example.com"),
        user("e", "/Pilot"),
        user("f", None),
    ]
    order = ("/Pilot", "early@example.com", "/IT")
    expected = ["c", "e", "d", "b", "a", "f"]
    for size in range(1, 7):
        result = plan(snapshot(*users), [], policy(str(size), order), NOW)
        kept = sorted(a.email.split("@")[0] for a in result.actions)
        assert kept == sorted(expected[:size]), size
        assert result.deferred_new == 6 - size


def test_known_users_without_a_credential_are_throttled_too() -> None:
    """An earlier pass deferred them: the state store knows them from then on (no_credential)."""
    users = [user(n) for n in "abcd"]
    views = [UserView(f"{n}@example.com", f"id-{n}", True) for n in "abc"]
    result = plan(snapshot(*users), views, policy("1"), NOW)
    assert [(a.email, a.code) for a in result.actions] == [
        ("a@example.com", ReasonCode.NO_CREDENTIAL)
    ]
    assert result.deferred_new == 3


def test_everything_else_is_never_deferred() -> None:
    """Resumes, retries, renewals, deprovisions and users back with earlier key pairs go on
    whatever the limit; only first credentials wait."""
    expiring = CredentialView(1, NOW + timedelta(days=3), not_before=NOW - timedelta(days=300))
    views = [
        UserView("resume@example.com", "id-resume", True,
                 open_task=TaskView(TaskKind.PROVISION, TaskStatus.PENDING, "kms", 0, None, None)),
        UserView("retry@example.com", "id-retry", True,
                 open_task=TaskView(TaskKind.PROVISION, TaskStatus.FAILED, "gmail", 2,
                                    NOW - timedelta(minutes=1), "503")),
        UserView("renew@example.com", "id-renew", True, active=expiring, holds_credentials=True),
        UserView("gone@example.com", "id-gone", True, active=expiring, holds_credentials=True,
                 missing_since=NOW - timedelta(hours=2)),
        UserView("back@example.com", "id-back", True,
                 retired=(RetiredKeyPair(1, KeyPairStatus.DISABLED, disabled_at=NOW),)),
    ]  # fmt: skip
    listed = [user(n) for n in ("resume", "retry", "renew", "back", "new1", "new2", "new3")]
    result = plan(snapshot(*listed), views, policy("1"), NOW)
    by_email = {a.email.split("@")[0]: (a.kind, a.code) for a in result.actions}
    assert by_email == {
        "resume": (ActionKind.RESUME, ReasonCode.TASK_INTERRUPTED),
        "retry": (ActionKind.RETRY, ReasonCode.BACKOFF_ELAPSED),
        "renew": (ActionKind.RENEW, ReasonCode.EXPIRING),
        "gone": (ActionKind.DEPROVISION, ReasonCode.LEFT_SCOPE),
        "back": (ActionKind.PROVISION, ReasonCode.NO_CREDENTIAL),
        "new1": (ActionKind.PROVISION, ReasonCode.NEW_IN_SCOPE),
    }
    assert result.deferred_new == 2


def test_deferred_users_stay_in_scope_and_nothing_is_held() -> None:
    result = plan(snapshot(*(user(n) for n in "abc")), [], policy("1"), NOW)
    assert result.kept_in_scope == frozenset() and result.held == ()
    assert result.counts() == {"provision": 1}
