"""The plan's shortcut for quiet users (syncd.plan.rules.quiet): never True for a user a rule
of the chain would answer. Every combination of a grid of users (directory entry, state,
credential, task, earlier key pairs, verification due, policy) goes through both."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from syncd.directory.base import DirectoryUser, SkippedEntry, Snapshot
from syncd.domain import KeyPairStatus, ReasonCode, TaskKind, TaskStatus
from syncd.plan import (
    CredentialView,
    DesiredProfile,
    Policy,
    RetiredKeyPair,
    Subject,
    TaskView,
    UserView,
    decide,
    plan,
)
from syncd.plan.drift import verification_slice
from syncd.plan.reissue import desired_record
from syncd.plan.rules import quiet

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
DESIRED = DesiredProfile(key_bits=3072, issuer="new-ca")
BASE = Policy(
    renew_before=timedelta(days=30),
    max_deprovision="100%",
    superseded_disable_after=timedelta(days=1),
    obliterate_after=timedelta(days=40),
)
POLICIES = [
    BASE,
    replace(BASE, profile=DESIRED),
    replace(BASE, profile=DesiredProfile(key_bits=3072, issuer="new-ca", include_aliases=True)),
    replace(BASE, profile=DESIRED, issuer_not_after=NOW + timedelta(days=10)),
]
EMAIL = "u@x.com"

LISTED = [
    None,
    DirectoryUser(EMAIL, "id-u"),
    DirectoryUser(EMAIL, "id-u", enabled=False),
    DirectoryUser(EMAIL, "id-other"),
    DirectoryUser(EMAIL, "id-u", aliases=("alias@x.com",)),
]
CREDENTIALS = [
    None,
    CredentialView(1, NOW + timedelta(days=300), not_before=NOW - timedelta(days=60)),
    CredentialView(
        1,
        NOW + timedelta(days=300),
        not_before=NOW - timedelta(days=60),
        profile=DESIRED.record(),
    ),
    CredentialView(
        1,
        NOW + timedelta(days=300),
        not_before=NOW - timedelta(days=60),
        profile=DesiredProfile(key_bits=2048).record(),
    ),
    CredentialView(
        1,
        NOW + timedelta(days=300),
        not_before=NOW - timedelta(days=60),
        profile=DESIRED.record(),
        origin="adopted",
    ),
    CredentialView(1, NOW + timedelta(days=300), profile=DESIRED.record(), origin="other"),
    CredentialView(1, NOW + timedelta(days=5), not_before=NOW - timedelta(days=360)),
    CredentialView(1, NOW + timedelta(days=5), not_before=NOW - timedelta(days=2)),
    CredentialView(1, None),
    CredentialView(
        1,
        NOW + timedelta(days=300),
        verified_at=NOW - timedelta(days=1),
        drift=ReasonCode.DRIFT_IDENTITY_MISSING,
    ),
    CredentialView(
        1, NOW + timedelta(days=300), drift=ReasonCode.DRIFT_KEYPAIR_MISSING, origin="adopted"
    ),
]
TASKS = [
    None,
    TaskView(TaskKind.PROVISION, TaskStatus.PENDING, None, 0, None, None),
    TaskView(TaskKind.RENEW, TaskStatus.FAILED, "upload", 2, NOW + timedelta(hours=1), "err"),
    TaskView(TaskKind.DEPROVISION, TaskStatus.RUNNING, "revoke", 1, None, None),
    TaskView(TaskKind.RETIRE, TaskStatus.FAILED, None, 5, None, "gone", permanent=True),
]
RETIRED = [
    (),
    (RetiredKeyPair(0, KeyPairStatus.SUPERSEDED, superseded_at=NOW - timedelta(hours=1)),),
    (RetiredKeyPair(0, KeyPairStatus.SUPERSEDED, superseded_at=NOW - timedelta(days=3)),),
    (RetiredKeyPair(0, KeyPairStatus.DISABLED, disabled_at=NOW - timedelta(days=90)),),
]


def _known(
    credential: CredentialView | None, task: TaskView | None, retired: tuple[RetiredKeyPair, ...]
) -> list[UserView | None]:
    views: list[UserView | None] = [None]
    for in_scope, holds, missing in itertools.product(
        (True, False), (True, False), (None, NOW - timedelta(days=1))
    ):
        views.append(
            UserView(
                EMAIL,
                "id-u",
                in_scope,
                active=credential,
                open_task=task,
                holds_credentials=holds,
                missing_since=missing,
                retired=retired,
            )
        )
    return views


def test_quiet_users_are_the_ones_no_rule_answers() -> None:
    quiet_seen = answered = 0
    for credential, task, retired in itertools.product(CREDENTIALS, TASKS, RETIRED):
        for view, entry, policy, due, unusable in itertools.product(
            _known(credential, task, retired),
            LISTED,
            POLICIES,
            (False, True),
            (None, SkippedEntry("line 3", "bad", EMAIL)),
        ):
            subject = Subject(EMAIL, entry, view, policy, NOW, unusable, verify_due=due)
            decision = decide(subject)
            answered += decision is not None
            plain = desired_record(policy.profile, ()) if policy.profile else None
            shortcut = quiet(entry, view, policy, NOW, due)
            assert quiet(entry, view, policy, NOW, due, plain) is shortcut
            if shortcut:
                quiet_seen += 1
                assert decision is None, (subject, decision)
    # The grid reaches both sides: many quiet users, many a rule answers.
    assert quiet_seen > 500 and answered > 10000


def test_an_idle_plan_is_the_same_with_the_shortcut() -> None:
    """Quiet users beside users every rule answers, through plan(): the same actions and
    holds as the chain alone gives (the shortcut only skips users it answers None for)."""
    policy = replace(BASE, profile=DESIRED)
    users = []
    views = []
    for n, credential in enumerate(CREDENTIALS):
        email = f"user{n}@x.com"
        users.append(DirectoryUser(email, f"id-{n}"))
        if credential is not None:
            views.append(
                UserView(email, f"id-{n}", True, active=credential, holds_credentials=True)
            )
    snapshot = Snapshot("static", NOW, tuple(users))
    last = NOW - timedelta(days=1)
    result = plan(snapshot, views, policy, NOW, last)
    verify = verification_slice(views, policy, NOW, last)
    by_chain = {}
    known = {v.email: v for v in views}
    for user in users:
        due = user.email in verify
        decision = decide(
            Subject(user.email, user, known.get(user.email), policy, NOW, verify_due=due)
        )
        if decision is not None:
            by_chain[user.email] = decision
    assert {a.email: a for a in result.actions} | {h.email: h for h in result.held} == by_chain
    assert by_chain  # some users are not quiet
