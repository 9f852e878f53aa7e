"""Renames and reused addresses across users: which listed users pair_renames takes for
renamed, and what the whole plan then does with both addresses (the rules' own rows are in
test_rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.domain import ActionKind, ReasonCode, TaskKind
from syncd.plan import CredentialView, Policy, UserView, plan
from syncd.plan.identity import pair_renames

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
POLICY = Policy(timedelta(days=30), "100%", deprovision_after=timedelta(0))


def view(email: str, directory_id: str, *, holds: bool = True, in_scope: bool = True) -> UserView:
    active = CredentialView(1, NOW + timedelta(days=300)) if holds else None
    return UserView(email, directory_id, in_scope, active, holds_credentials=holds)


def entry(email: str, directory_id: str) -> DirectoryUser:
    return DirectoryUser(email, directory_id)


def pairs(listed: list[DirectoryUser], known: list[UserView]) -> dict[str, str]:
    found = pair_renames({u.email: u for u in listed}, {v.email: v for v in known})
    return {new: old.email for new, old in found.items()}


def test_a_new_address_with_a_known_directory_id_is_a_rename() -> None:
    known = [view("ann@x.com", "id-1"), view("bob@x.com", "id-2")]
    listed = [entry("ann.smith@x.com", "id-1"), entry("bob@x.com", "id-2")]
    assert pairs(listed, known) == {"ann.smith@x.com": "ann@x.com"}


def test_ids_shared_by_several_pair_nobody() -> None:
    known = [view("ann@x.com", "id-1"), view("cat@x.com", "id-3"), view("dan@x.com", "id-3")]
    listed = [
        entry("ann.a@x.com", "id-1"),
        entry("ann.b@x.com", "id-1"),  # two newcomers claim id-1
        entry("cat.new@x.com", "id-3"),  # two departed users held id-3
    ]
    assert pairs(listed, known) == {}


def test_renamed_into_an_address_syncd_knows_is_not_a_rename() -> None:
    # eve@ once belonged to someone else (id-9, credential still held); ann (id-1) takes it.
    known = [view("ann@x.com", "id-1"), view("eve@x.com", "id-9")]
    listed = [entry("eve@x.com", "id-1")]
    assert pairs(listed, known) == {}
    result = plan(Snapshot("static", NOW, tuple(listed)), known, POLICY, NOW)
    decided = {a.email: (a.kind, a.code) for a in result.actions}
    assert decided == {
        # eve@'s old credential ends and ann gets a fresh one at eve@...
        "eve@x.com": (ActionKind.REASSIGN, ReasonCode.ADDRESS_REUSED),
        # ...and ann's credential at her old address is ended like any departure's.
        "ann@x.com": (ActionKind.DEPROVISION, ReasonCode.LEFT_SCOPE),
    }
    assert result.renames == ()


def test_only_a_departed_user_with_something_to_carry_is_paired() -> None:
    # A user out of scope whose credential already ended is history, not a rename source.
    gone = view("ann@x.com", "id-1", holds=False, in_scope=False)
    assert pairs([entry("ann.new@x.com", "id-1")], [gone]) == {}
    # Still in scope (missing for less than the grace period, say): paired.
    waiting = view("ann@x.com", "id-1", holds=False, in_scope=True)
    assert pairs([entry("ann.new@x.com", "id-1")], [waiting]) == {"ann.new@x.com": "ann@x.com"}


def test_the_plan_renames_and_leaves_the_old_address_alone() -> None:
    known = [view("ann@x.com", "id-1"), view("bob@x.com", "id-2")]
    listed = (entry("ann.smith@x.com", "id-1"), entry("bob@x.com", "id-2"))
    result = plan(Snapshot("static", NOW, listed), known, POLICY, NOW)
    (action,) = result.actions
    assert (action.email, action.kind, action.task_kind, action.code) == (
        "ann.smith@x.com", ActionKind.RENAME, TaskKind.RENAME, ReasonCode.RENAMED
    )
    assert action.directory_id == "id-1"
    assert result.renames == (("ann.smith@x.com", "ann@x.com"),)
    assert result.held == () and result.kept_in_scope == frozenset()


def test_a_directory_id_attribute_changed_for_everyone_is_blocked_by_the_limit() -> None:
    # The source's id attribute was reconfigured: every address now has a new id. Each
    # looks like an address given to someone else; together they are a mass deprovision.
    known = [view(f"u{i}@x.com", f"old-{i}") for i in range(10)]
    listed = tuple(entry(f"u{i}@x.com", f"new-{i}") for i in range(10))
    strict = Policy(timedelta(days=30), "20%", deprovision_after=timedelta(0))
    result = plan(Snapshot("static", NOW, listed), known, strict, NOW)
    assert result.actions == ()
    assert len(result.blocked_deprovisions) == 10
    assert {a.kind for a in result.blocked_deprovisions} == {ActionKind.REASSIGN}
    assert result.blocked_code is ReasonCode.MASS_DEPROVISION_BLOCKED
    assert result.blocked_reason is not None
    assert result.blocked_reason.startswith("10 of 10 managed users would be deprovisioned")
    # Two reused addresses are within 20% of ten: they go ahead.
    some = tuple(entry(f"u{i}@x.com", f"new-{i}" if i < 2 else f"old-{i}") for i in range(10))
    within = plan(Snapshot("static", NOW, some), known, strict, NOW)
    assert within.blocked_reason is None
    assert [(a.email, a.kind) for a in within.actions] == [
        ("u0@x.com", ActionKind.REASSIGN),
        ("u1@x.com", ActionKind.REASSIGN),
    ]
