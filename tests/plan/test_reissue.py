"""Configuration drift and its throttle (syncd.plan.reissue): what counts as a change, the
prose it gives, and how many re-issues one pass makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.domain import ActionKind, ReasonCode, TaskKind
from syncd.plan import Action, CredentialView, DesiredProfile, Policy, UserView, plan
from syncd.plan.reissue import differences, reissue_limit, throttle

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
OLD = DesiredProfile(
    key_bits=2048, issuer="old-ca", crl=("http://pki.example.com/old.crl",), include_aliases=True
)


def policy(per_pass: str = "1%", profile: DesiredProfile | None = OLD) -> Policy:
    return Policy(
        renew_before=timedelta(days=30),
        max_deprovision="100%",
        reissue_per_pass=per_pass,
        profile=profile,
    )


# differences


def test_no_differences_for_the_same_record() -> None:
    assert differences(OLD.record(), OLD.record()) == []


def test_differences_name_each_changed_key_in_order() -> None:
    new = DesiredProfile(key_bits=3072, issuer="new-ca", crl=OLD.crl, include_aliases=True)
    assert differences(OLD.record(), new.record()) == [
        "key_bits 2048 -> 3072",
        "issuer old-ca -> new-ca",
    ]


def test_a_key_missing_from_either_side_is_not_drift() -> None:
    recorded = OLD.record()
    del recorded["subject_template"], recorded["issuer"]
    changed = DesiredProfile(
        key_bits=2048, subject_template="CN={local_part}", issuer="new-ca", crl=OLD.crl,
        include_aliases=True,
    )  # fmt: skip
    assert differences(recorded, changed.record()) == []
    desired = changed.record()
    del desired["key_bits"]
    assert differences({"key_bits": 4096}, desired) == []


def test_lists_compare_as_lists_and_are_shortened_in_prose() -> None:
    recorded = {"crl": ("http://a/x.crl",), "aliases": []}
    assert differences(recorded, {"crl": ["http://a/x.crl"], "aliases": []}) == []
    long_url = "http://pki.example.com/" + "very-long-path/" * 6 + "issuing.crl"
    desired = {
        "crl": ["http://b/1.crl", long_url, "http://b/3.crl", "http://b/4.crl"],
        "aliases": ["sales@x.com"],
    }
    crl, aliases = differences(recorded, desired)
    assert aliases == "aliases [] -> [sales@x.com]"
    assert crl.startswith("crl [http://a/x.crl] -> [http://b/1.crl, http://pki.example.com/")
    assert crl.endswith("…, +2 more]")
    assert len(crl) < 120


# reissue_limit and throttle


@pytest.mark.parametrize(
    ("per_pass", "managed", "limit"),
    [
        ("1000", 100_000, 1000),
        ("2", 6, 2),
        ("1%", 100_000, 1000),
        ("1%", 150, 2),  # rounded up
        ("10%", 6, 1),
        ("1%", 10, 1),  # at least one
        ("0", 10, 1),  # at least one
        ("0%", 0, 1),
        ("100%", 6, 6),
    ],
)
def test_reissue_limit(per_pass: str, managed: int, limit: int) -> None:
    assert reissue_limit(per_pass, managed) == limit


def _action(email: str, code: ReasonCode, kind: ActionKind = ActionKind.RENEW) -> Action:
    return Action(email, kind, str(code), TaskKind.RENEW, f"id-{email}", code)


def test_throttle_keeps_the_first_config_changes_and_never_other_actions() -> None:
    actions = [
        _action("a@x.com", ReasonCode.CONFIG_CHANGED),
        _action("b@x.com", ReasonCode.EXPIRING),
        _action("c@x.com", ReasonCode.CONFIG_CHANGED),
        _action("d@x.com", ReasonCode.NEW_IN_SCOPE, ActionKind.PROVISION),
        _action("e@x.com", ReasonCode.CONFIG_CHANGED),
        _action("f@x.com", ReasonCode.CONFIG_CHANGED),
    ]
    kept, pending = throttle(actions, policy("2"), managed=6)
    assert [a.email for a in kept] == ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]
    assert pending == 2
    kept, pending = throttle(actions, policy("50%"), managed=6)  # 3 of 6
    assert [a.email for a in kept] == ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"]
    assert pending == 1
    kept, pending = throttle(actions, policy("1%"), managed=6)  # at least one
    assert [a.email for a in kept] == ["a@x.com", "b@x.com", "d@x.com"]
    assert pending == 3
    assert throttle(actions, policy("10"), managed=6) == (actions, 0)


# the rule inside whole plans


def _user(i: int, profile: dict[str, object] | None, expires_in: int = 300) -> UserView:
    email = f"u{i:02d}@x.com"
    active = CredentialView(1, NOW + timedelta(days=expires_in), profile=profile)
    return UserView(email, f"id-{email}", True, active, holds_credentials=True)


def test_a_rollover_is_spread_over_passes_and_expiry_is_not_throttled() -> None:
    views = [_user(i, OLD.record()) for i in range(5)]
    views.append(_user(5, OLD.record(), expires_in=10))  # due for expiry as well
    snapshot = Snapshot("static", NOW, tuple(DirectoryUser(v.email, v.directory_id) for v in views))
    new = DesiredProfile(key_bits=2048, issuer="new-ca", crl=OLD.crl, include_aliases=True)
    result = plan(snapshot, views, policy("2", new), NOW)
    assert [(a.email, a.code, a.reason) for a in result.actions] == [
        ("u00@x.com", ReasonCode.CONFIG_CHANGED, "config changed: issuer old-ca -> new-ca"),
        ("u01@x.com", ReasonCode.CONFIG_CHANGED, "config changed: issuer old-ca -> new-ca"),
        ("u05@x.com", ReasonCode.EXPIRING, "certificate (generation 1) expires 2026-12-10"),
    ]
    assert all(a.kind is ActionKind.RENEW and a.task_kind is TaskKind.RENEW
               for a in result.actions)  # fmt: skip
    assert result.pending_reissue == 3
    # Nothing changed in the configuration: nothing to do, nothing pending.
    current = Snapshot("static", NOW, snapshot.users[:5])
    same = plan(current, views[:5], policy("2", OLD), NOW)
    assert same.actions == () and same.pending_reissue == 0


def test_aliases_changed_in_the_directory_are_drift_only_with_include_aliases() -> None:
    view = _user(0, OLD.record(("old@x.com",)))
    listed = DirectoryUser(view.email, view.directory_id, aliases=("new@x.com",))
    snapshot = Snapshot("static", NOW, (listed,))
    (action,) = plan(snapshot, [view], policy(), NOW).actions
    assert action.reason == "config changed: aliases [old@x.com] -> [new@x.com]"
    without = DesiredProfile(key_bits=2048, issuer="old-ca", crl=OLD.crl)
    view = _user(0, without.record())
    assert plan(snapshot, [view], policy(profile=without), NOW).actions == ()


@pytest.mark.parametrize(
    "view",
    [
        _user(0, None),  # no record: issued before profiles were kept and not backfilled
        UserView(
            "u00@x.com",
            "id-u00@x.com",
            True,
            CredentialView(
                1, NOW + timedelta(days=300), profile={"key_bits": 1024}, origin="foreign"
            ),
            holds_credentials=True,
        ),
    ],
    ids=["no record", "not syncd's"],
)
def test_no_reissue_without_a_record_or_for_a_credential_syncd_does_not_own(
    view: UserView,
) -> None:
    snapshot = Snapshot("static", NOW, (DirectoryUser(view.email, view.directory_id),))
    result = plan(snapshot, [view], policy(), NOW)
    assert result.actions == () and result.pending_reissue == 0


def test_no_reissue_when_the_policy_has_no_profile() -> None:
    view = _user(0, {"key_bits": 1024})
    snapshot = Snapshot("static", NOW, (DirectoryUser(view.email, view.directory_id),))
    assert plan(snapshot, [view], policy(profile=None), NOW).actions == ()


def test_an_adopted_credential_is_reissued_like_syncd_s_own() -> None:
    active = CredentialView(
        1, NOW + timedelta(days=300), profile={"key_bits": 2048, "hash": "sha1"}, origin="adopted"
    )
    view = UserView("u00@x.com", "id-u00", True, active, holds_credentials=True)
    snapshot = Snapshot("static", NOW, (DirectoryUser(view.email, view.directory_id),))
    (action,) = plan(snapshot, [view], policy(), NOW).actions
    assert (action.code, action.reason) == (
        ReasonCode.CONFIG_CHANGED, "config changed: hash sha1 -> sha256"
    )  # fmt: skip
