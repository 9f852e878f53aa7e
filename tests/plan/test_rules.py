"""The plan's rule chain, one rule per table row (as cert-manager tests its trigger policies).

Each row is one user: what the state store knows of them, what the directory's read says
(listed, disabled, absent, named by an unusable entry), and the decision expected: the
action (or a hold, or nothing), its stable reason code, the task it runs as, the prose shown
by ``syncd plan``, and the rule of ``syncd.plan.RULES`` that decides. Every row goes through
``plan()`` beside a bystander (so the snapshot is never empty); a last check proves the
table reaches every rule of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from syncd.directory.base import DirectoryUser, SkippedEntry, Snapshot
from syncd.domain import EXISTING_CREDENTIALS_PREFIX, ActionKind, ReasonCode, TaskKind, TaskStatus
from syncd.pipeline.claims import hold_claimed
from syncd.plan import (
    RULES,
    Action,
    CredentialView,
    Hold,
    Policy,
    Subject,
    TaskView,
    UserView,
    on_demand,
    plan,
)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
POLICY = Policy(
    renew_before=timedelta(days=30), max_deprovision="100%", deprovision_after=timedelta(hours=1)
)
USER = "u@x.com"
BYSTANDER = "keep@x.com"
HOLD = "hold"


def listed(enabled: bool = True) -> DirectoryUser:
    return DirectoryUser(USER, "id-u", enabled)


def known(
    *,
    expires_in: timedelta | None = timedelta(days=300),
    task: TaskView | None = None,
    holds: bool = True,
    missing_since: datetime | None = None,
    in_scope: bool = True,
) -> UserView:
    active = CredentialView(2, NOW + expires_in) if expires_in is not None else None
    return UserView(USER, "id-u", in_scope, active, task, holds, missing_since)


def task(
    kind: TaskKind,
    status: TaskStatus,
    *,
    due: datetime | None = None,
    permanent: bool = False,
) -> TaskView:
    error = "upload_keypair: 400 invalid certificate" if permanent else "503 backendError"
    return TaskView(kind, status, "upload_keypair", 3, due, error, permanent)


HAND_MADE = (
    f"{EXISTING_CREDENTIALS_PREFIX}u@x.com points at key pair kp-hand, not made by syncd; "
    "policy.existing_credentials is hold: set it to adopt (take over a valid key pair) or "
    "replace, then syncd resync --user u@x.com"
)
UNUSABLE = SkippedEntry("users.yaml entry 4", "invalid email 'u@'", None, "id-u")


@dataclass(frozen=True)
class Row:
    name: str
    state: UserView | None
    entry: DirectoryUser | None
    expected: ActionKind | str | None
    code: ReasonCode | None
    rule: str | None
    reason: str = ""
    task: TaskKind | None = None
    unusable: SkippedEntry | None = None


TABLE = [
    # not_provisioned
    Row("new user", None, listed(), ActionKind.PROVISION, ReasonCode.NEW_IN_SCOPE,
        "not_provisioned", "new in scope", TaskKind.PROVISION),
    Row("known, no credential", known(expires_in=None, holds=False), listed(),
        ActionKind.PROVISION, ReasonCode.NO_CREDENTIAL, "not_provisioned",
        "in scope without a credential", TaskKind.PROVISION),
    Row("returning after a deprovision", known(expires_in=None, holds=False, in_scope=False),
        listed(), ActionKind.PROVISION, ReasonCode.NO_CREDENTIAL, "not_provisioned",
        "in scope without a credential", TaskKind.PROVISION),
    # expiring
    Row("certificate inside renew_before", known(expires_in=timedelta(days=10)), listed(),
        ActionKind.RENEW, ReasonCode.EXPIRING, "expiring",
        "certificate (generation 2) expires 2026-12-10", TaskKind.RENEW),
    Row("certificate exactly at renew_before", known(expires_in=timedelta(days=30)), listed(),
        ActionKind.RENEW, ReasonCode.EXPIRING, "expiring",
        "certificate (generation 2) expires 2026-12-30", TaskKind.RENEW),
    Row("certificate a second beyond renew_before",
        known(expires_in=timedelta(days=30, seconds=1)), listed(), None, None, None),
    Row("provisioned and current", known(), listed(), None, None, None),
    # left_or_disabled
    Row("disabled in the directory", known(), listed(enabled=False), ActionKind.DEPROVISION,
        ReasonCode.DISABLED_IN_DIRECTORY, "left_or_disabled",
        "disabled or suspended in the directory", TaskKind.DEPROVISION),
    Row("missing for longer than the grace period", known(missing_since=NOW - timedelta(hours=1)),
        None, ActionKind.DEPROVISION, ReasonCode.LEFT_SCOPE, "left_or_disabled",
        "no longer in the directory scope", TaskKind.DEPROVISION),
    Row("missing within the grace period",
        known(missing_since=NOW - timedelta(minutes=59)), None, HOLD,
        ReasonCode.MISSING_GRACE_PERIOD, "left_or_disabled",
        "not in the directory: missing since 2026-11-30 11:01Z, deprovision after 1h "
        "(at 2026-11-30 12:01Z)"),
    Row("missing for the first time", known(), None, HOLD, ReasonCode.MISSING_GRACE_PERIOD,
        "left_or_disabled",
        "not in the directory: missing since 2026-11-30 12:00Z, deprovision after 1h "
        "(at 2026-11-30 13:00Z)"),
    Row("unfinished provision of a disabled user",
        known(expires_in=None, holds=False, task=task(TaskKind.PROVISION, TaskStatus.RUNNING)),
        listed(enabled=False), ActionKind.DEPROVISION, ReasonCode.DISABLED_IN_DIRECTORY,
        "left_or_disabled", "disabled or suspended in the directory", TaskKind.DEPROVISION),
    Row("permanently failed provision of a user who left",
        known(missing_since=NOW - timedelta(days=1),
              task=task(TaskKind.PROVISION, TaskStatus.FAILED, permanent=True)),
        None, ActionKind.DEPROVISION, ReasonCode.LEFT_SCOPE, "left_or_disabled",
        "no longer in the directory scope", TaskKind.DEPROVISION),
    Row("disabled with nothing to undo", known(expires_in=None, holds=False),
        listed(enabled=False), None, None, None),
    Row("gone with nothing to undo",
        known(expires_in=None, holds=False, missing_since=NOW - timedelta(days=9)), None,
        None, None, None),
    # named_by_unusable_entry
    Row("named by an unusable entry", known(), None, HOLD, ReasonCode.UNUSABLE_ENTRY,
        "named_by_unusable_entry",
        "directory entry unusable: users.yaml entry 4: invalid email 'u@'; keeping current "
        "state", unusable=UNUSABLE),
    # unfinished_task
    Row("interrupted provision", known(expires_in=None, task=task(TaskKind.PROVISION,
        TaskStatus.RUNNING)), listed(), ActionKind.RESUME, ReasonCode.TASK_INTERRUPTED,
        "unfinished_task", "provision interrupted at upload_keypair", TaskKind.PROVISION),
    Row("pending renewal", known(task=task(TaskKind.RENEW, TaskStatus.PENDING)), listed(),
        ActionKind.RESUME, ReasonCode.TASK_INTERRUPTED, "unfinished_task",
        "renew interrupted at upload_keypair", TaskKind.RENEW),
    Row("failed provision, backoff elapsed",
        known(expires_in=None, task=task(TaskKind.PROVISION, TaskStatus.FAILED, due=NOW)),
        listed(), ActionKind.RETRY, ReasonCode.BACKOFF_ELAPSED, "unfinished_task",
        "provision failed at upload_keypair; backoff elapsed", TaskKind.PROVISION),
    Row("failed repair, waiting for its next attempt",
        known(task=task(TaskKind.REPAIR, TaskStatus.FAILED, due=NOW + timedelta(minutes=5))),
        listed(), HOLD, ReasonCode.BACKOFF_PENDING, "unfinished_task",
        "repair failed at upload_keypair (3 attempts); next try after 2026-11-30 12:05Z: "
        "503 backendError"),
    # unfinished_deprovision
    Row("interrupted deprovision of a returning user",
        known(task=task(TaskKind.DEPROVISION, TaskStatus.RUNNING)), listed(),
        ActionKind.RESUME, ReasonCode.TASK_INTERRUPTED, "unfinished_deprovision",
        "deprovision interrupted at upload_keypair", TaskKind.DEPROVISION),
    Row("failed deprovision, backoff elapsed",
        known(task=task(TaskKind.DEPROVISION, TaskStatus.FAILED, due=NOW - timedelta(1))),
        None, ActionKind.RETRY, ReasonCode.BACKOFF_ELAPSED, "unfinished_deprovision",
        "deprovision failed at upload_keypair; backoff elapsed", TaskKind.DEPROVISION),
    Row("failed deprovision of an unusable entry's user, waiting",
        known(task=task(TaskKind.DEPROVISION, TaskStatus.FAILED, due=NOW + timedelta(hours=2))),
        None, HOLD, ReasonCode.BACKOFF_PENDING, "unfinished_deprovision",
        "deprovision failed at upload_keypair (3 attempts); next try after "
        "2026-11-30 14:00Z: 503 backendError", unusable=UNUSABLE),
    # permanent_failure
    Row("permanently failed provision",
        known(expires_in=None, task=task(TaskKind.PROVISION, TaskStatus.FAILED,
                                         permanent=True)),
        listed(), HOLD, ReasonCode.PERMANENT_FAILURE, "permanent_failure",
        "permanent failure at upload_keypair: 400 invalid certificate; fix the cause, then "
        "syncd resync --user u@x.com"),
    Row("permanently failed deprovision of a user who left",
        known(task=task(TaskKind.DEPROVISION, TaskStatus.FAILED, permanent=True)), None, HOLD,
        ReasonCode.PERMANENT_FAILURE, "permanent_failure",
        "permanent failure at upload_keypair: 400 invalid certificate; fix the cause, then "
        "syncd resync --user u@x.com"),
    Row("an identity made by hand, policy.existing_credentials hold",
        known(expires_in=None, task=TaskView(
            TaskKind.PROVISION, TaskStatus.FAILED, "check_existing", 1, None,
            f"check_existing: {HAND_MADE}", True)),
        listed(), HOLD, ReasonCode.EXISTING_CREDENTIALS, "permanent_failure", HAND_MADE),
]


def bystander() -> tuple[DirectoryUser, UserView]:
    return (
        DirectoryUser(BYSTANDER, "id-keep"),
        UserView(BYSTANDER, "id-keep", True, CredentialView(1, NOW + timedelta(days=300)),
                 holds_credentials=True),
    )


def decision(row: Row) -> Action | Hold | None:
    """The row's user's decision in a whole plan."""
    entry, view = bystander()
    listed_users = (entry,) if row.entry is None else (entry, row.entry)
    skipped = (row.unusable,) if row.unusable is not None else ()
    views = [view] if row.state is None else [view, row.state]
    result = plan(Snapshot("static", NOW, listed_users, skipped), views, POLICY, NOW)
    mine: list[Action | Hold] = [a for a in result.actions if a.email == USER]
    mine += [h for h in result.held if h.email == USER]
    assert BYSTANDER not in {a.email for a in result.actions}
    assert len(mine) <= 1
    return mine[0] if mine else None


def deciding_rule(row: Row) -> str | None:
    subject = Subject(USER, row.entry, row.state, POLICY, NOW, row.unusable)
    for rule in RULES:
        if rule(subject) is not None:
            return rule.__name__
    return None


@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
def test_rule(row: Row) -> None:
    found = decision(row)
    assert deciding_rule(row) == row.rule
    if row.expected is None:
        assert found is None
        return
    assert found is not None
    assert found.code is row.code
    assert found.reason == row.reason
    if row.expected == HOLD:
        assert isinstance(found, Hold)
    else:
        assert isinstance(found, Action)
        assert found.kind is row.expected
        assert found.task_kind is row.task
        assert found.directory_id == "id-u"


def test_the_table_reaches_every_rule() -> None:
    reached = {row.rule for row in TABLE}
    assert {rule.__name__ for rule in RULES} <= reached


def test_every_code_is_given() -> None:
    given = {row.code for row in TABLE} | {
        ReasonCode.RESYNC_REPAIR,
        ReasonCode.RESYNC_REPLACE,
        ReasonCode.CLAIMED_BY_ANOTHER_PASS,
        ReasonCode.MASS_DEPROVISION_BLOCKED,
    }
    assert given - {None} == set(ReasonCode)


# The decisions around the chain: on demand, claimed elsewhere, the deprovision limit.


def test_on_demand_codes() -> None:
    _, view = bystander()
    (repair,), _ = on_demand([BYSTANDER], [view], force=False)
    (replace,), _ = on_demand([BYSTANDER], [view], force=True)
    assert (repair.kind, repair.task_kind, repair.code) == (
        ActionKind.REPAIR, TaskKind.REPAIR, ReasonCode.RESYNC_REPAIR
    )
    assert (replace.kind, replace.task_kind, replace.code) == (
        ActionKind.REPLACE, TaskKind.REPLACE, ReasonCode.RESYNC_REPLACE
    )


def test_a_claimed_user_is_held_with_its_code() -> None:
    result = plan(Snapshot("static", NOW, (listed(),)), [], POLICY, NOW)
    (held,) = hold_claimed(result, {USER: "claimed by pass 7"}).held
    assert (held.reason, held.code) == ("claimed by pass 7", ReasonCode.CLAIMED_BY_ANOTHER_PASS)


def test_too_many_deprovisions_block_with_their_code() -> None:
    entry, view = bystander()
    gone = [UserView(f"g{i}@x.com", f"id-g{i}", True, CredentialView(1, NOW + timedelta(days=300)),
                     holds_credentials=True, missing_since=NOW - timedelta(days=1))
            for i in range(3)]
    strict = Policy(timedelta(days=30), "2", deprovision_after=timedelta(hours=1))
    result = plan(Snapshot("static", NOW, (entry,)), [view, *gone], strict, NOW)
    assert result.blocked_code is ReasonCode.MASS_DEPROVISION_BLOCKED
    assert result.blocked_reason is not None and result.blocked_reason.startswith(
        "3 of 4 managed users would be deprovisioned"
    )
    within = plan(Snapshot("static", NOW, (entry,)), [view, *gone[:2]], strict, NOW)
    assert within.blocked_code is None and within.blocked_reason is None
