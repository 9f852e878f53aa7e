"""The plan's rule chain, one rule per table row (as cert-manager tests its trigger policies).

Each row is one user: what the state store knows of them, what the directory's read says
(listed, disabled, absent, named by an unusable entry), and the decision expected: the
action (or a hold, or nothing), its stable reason code, the task it runs as, the prose shown
by ``syncd plan``, and the rule of ``syncd.plan.RULES`` that decides. Every row goes through
``plan()`` beside a bystander (so the snapshot is never empty); a last check proves the
table reaches every rule of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from syncd.directory.base import DirectoryUser, SkippedEntry, Snapshot
from syncd.domain import (
    EXISTING_CREDENTIALS_PREFIX,
    ActionKind,
    KeyPairStatus,
    ReasonCode,
    TaskKind,
    TaskStatus,
)
from syncd.pipeline.claims import hold_claimed
from syncd.plan import (
    RULES,
    Action,
    CredentialView,
    DesiredProfile,
    Hold,
    Policy,
    RetiredKeyPair,
    Subject,
    TaskView,
    UserView,
    on_demand,
    plan,
)
from syncd.plan.drift import verification_slice

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
DESIRED = DesiredProfile(key_bits=3072, issuer="new-ca")
POLICY = Policy(
    renew_before=timedelta(days=30), max_deprovision="100%", deprovision_after=timedelta(hours=1),
    profile=DESIRED,
)
USER = "u@x.com"
OLD = "old@x.com"
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
    profile: dict[str, object] | None = None,
) -> UserView:
    active = (
        CredentialView(2, NOW + expires_in, profile=profile) if expires_in is not None else None
    )
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


def credential(
    *,
    drift: ReasonCode | None = None,
    detail: str | None = None,
    verified: timedelta | None = None,
    issued: timedelta | None = None,
) -> UserView:
    """Provisioned and current; ``verified``/``issued``: that long ago (None: not known)."""
    active = CredentialView(
        2,
        NOW + timedelta(days=300),
        not_before=NOW - issued if issued is not None else None,
        verified_at=NOW - verified if verified is not None else None,
        drift=drift,
        drift_detail=detail,
    )
    return UserView(USER, "id-u", True, active, None, True)


FOUND = timedelta(hours=1)  # the drift rows' verification: 2026-11-30 11:00Z


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
    policy: Policy = POLICY


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
    # config_changed
    Row("key size raised", known(profile={**DESIRED.record(), "key_bits": 2048}), listed(),
        ActionKind.RENEW, ReasonCode.CONFIG_CHANGED, "config_changed",
        "config changed: key_bits 2048 -> 3072", TaskKind.RENEW),
    Row("issuing CA and CRL switched",
        known(profile={**DESIRED.record(), "issuer": "old-ca", "crl": ["http://a/old.crl"]}),
        listed(), ActionKind.RENEW, ReasonCode.CONFIG_CHANGED, "config_changed",
        "config changed: crl [http://a/old.crl] -> []; issuer old-ca -> new-ca", TaskKind.RENEW),
    Row("issued with the configured profile", known(profile=DESIRED.record()), listed(),
        None, None, None),
    Row("old record without the changed key",
        known(profile={"hash": "sha256", "crl": []}), listed(), None, None, None),
    Row("config changed and expiring: renewed for expiry",
        known(expires_in=timedelta(days=10), profile={**DESIRED.record(), "key_bits": 2048}),
        listed(), ActionKind.RENEW, ReasonCode.EXPIRING, "expiring",
        "certificate (generation 2) expires 2026-12-10", TaskKind.RENEW),
    Row("config changed for a disabled user: deprovisioned",
        known(profile={**DESIRED.record(), "key_bits": 2048}), listed(enabled=False),
        ActionKind.DEPROVISION, ReasonCode.DISABLED_IN_DIRECTORY, "left_or_disabled",
        "disabled or suspended in the directory", TaskKind.DEPROVISION),
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
    # renamed (the state store knows the directory id under OLD, the directory lists USER)
    Row("renamed, holding a credential", replace(known(), email=OLD), listed(),
        ActionKind.RENAME, ReasonCode.RENAMED, "renamed",
        "renamed from old@x.com (directory id id-u): new credential for the new address, the "
        "old identity deleted, the old key pair kept enabled", TaskKind.RENAME),
    Row("renamed during an unfinished renewal",
        replace(known(task=task(TaskKind.RENEW, TaskStatus.FAILED, due=NOW)), email=OLD),
        listed(), ActionKind.RENAME, ReasonCode.RENAMED, "renamed",
        "renamed from old@x.com (directory id id-u): new credential for the new address, the "
        "old identity deleted, the old key pair kept enabled", TaskKind.RENAME),
    Row("renamed before any credential",
        replace(known(expires_in=None, holds=False), email=OLD), listed(),
        ActionKind.PROVISION, ReasonCode.NO_CREDENTIAL, "not_provisioned",
        "in scope without a credential", TaskKind.PROVISION),
    Row("renamed and disabled", replace(known(), email=OLD), listed(enabled=False),
        ActionKind.DEPROVISION, ReasonCode.DISABLED_IN_DIRECTORY, "left_or_disabled",
        "disabled or suspended in the directory", TaskKind.DEPROVISION),
    # address_reused (the state store knows USER under another directory id)
    Row("address given to another person", replace(known(), directory_id="id-old"), listed(),
        ActionKind.REASSIGN, ReasonCode.ADDRESS_REUSED, "address_reused",
        "address now belongs to directory id id-u (was id-old): the old credential is ended "
        "(identity deleted, key pairs disabled, KMS keys revoked) and a fresh one made",
        TaskKind.REASSIGN),
    Row("address given to another person during a provision",
        replace(known(expires_in=None, holds=False,
                      task=task(TaskKind.PROVISION, TaskStatus.RUNNING)), directory_id="id-old"),
        listed(), ActionKind.REASSIGN, ReasonCode.ADDRESS_REUSED, "address_reused",
        "address now belongs to directory id id-u (was id-old): the old credential is ended "
        "(identity deleted, key pairs disabled, KMS keys revoked) and a fresh one made",
        TaskKind.REASSIGN),
    Row("address reused after the old credential ended",
        replace(known(expires_in=None, holds=False, in_scope=False), directory_id="id-old"),
        listed(), ActionKind.PROVISION, ReasonCode.NO_CREDENTIAL, "not_provisioned",
        "in scope without a credential", TaskKind.PROVISION),
    Row("address given to a disabled person", replace(known(), directory_id="id-old"),
        listed(enabled=False), ActionKind.DEPROVISION, ReasonCode.DISABLED_IN_DIRECTORY,
        "left_or_disabled", "disabled or suspended in the directory", TaskKind.DEPROVISION),
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
    # drifted (found by the last verification)
    Row("identity deleted outside syncd",
        credential(drift=ReasonCode.DRIFT_IDENTITY_MISSING, detail="identity not found in Gmail",
                   verified=FOUND),
        listed(), ActionKind.REPAIR, ReasonCode.DRIFT_IDENTITY_MISSING, "drifted",
        "identity deleted outside syncd (found 2026-11-30 11:00Z): identity not found in Gmail",
        TaskKind.REPAIR),
    Row("identity re-pointed outside syncd",
        credential(drift=ReasonCode.DRIFT_IDENTITY_REPOINTED,
                   detail="identity points at key pair k9, not syncd's k2", verified=FOUND),
        listed(), ActionKind.REPAIR, ReasonCode.DRIFT_IDENTITY_REPOINTED, "drifted",
        "identity re-pointed outside syncd (found 2026-11-30 11:00Z): identity points at key "
        "pair k9, not syncd's k2", TaskKind.REPAIR),
    Row("key pair disabled outside syncd",
        credential(drift=ReasonCode.DRIFT_KEYPAIR_DISABLED, detail="key pair k2 is disabled",
                   verified=FOUND),
        listed(), ActionKind.REPAIR, ReasonCode.DRIFT_KEYPAIR_DISABLED, "drifted",
        "key pair disabled outside syncd (found 2026-11-30 11:00Z): key pair k2 is disabled",
        TaskKind.REPAIR),
    Row("key pair deleted outside syncd",
        credential(drift=ReasonCode.DRIFT_KEYPAIR_MISSING, verified=FOUND), listed(),
        ActionKind.REPAIR, ReasonCode.DRIFT_KEYPAIR_MISSING, "drifted",
        "key pair deleted outside syncd (found 2026-11-30 11:00Z)", TaskKind.REPAIR),
    Row("KMS key revoked outside syncd",
        credential(drift=ReasonCode.DRIFT_KMS_KEY_REVOKED, detail="KMS key 7 in local is revoked",
                   verified=FOUND),
        listed(), ActionKind.REPLACE, ReasonCode.DRIFT_KMS_KEY_REVOKED, "drifted",
        "KMS key revoked outside syncd (found 2026-11-30 11:00Z): KMS key 7 in local is "
        "revoked; a fresh key pair", TaskKind.REPLACE),
    Row("adopted key pair deleted outside syncd: replaced",
        replace(credential(drift=ReasonCode.DRIFT_KEYPAIR_MISSING, verified=FOUND),
                active=CredentialView(2, NOW + timedelta(days=300), verified_at=NOW - FOUND,
                                      drift=ReasonCode.DRIFT_KEYPAIR_MISSING, origin="adopted")),
        listed(), ActionKind.REPLACE, ReasonCode.DRIFT_KEYPAIR_MISSING, "drifted",
        "key pair deleted outside syncd (found 2026-11-30 11:00Z); adopted, so a fresh key "
        "pair of syncd's own", TaskKind.REPLACE),
    Row("drift of a user who left: deprovisioned, not repaired",
        credential(drift=ReasonCode.DRIFT_KEYPAIR_DISABLED, verified=FOUND),
        listed(enabled=False), ActionKind.DEPROVISION, ReasonCode.DISABLED_IN_DIRECTORY,
        "left_or_disabled", "disabled or suspended in the directory", TaskKind.DEPROVISION),
    Row("drift and an expiring certificate: repaired first",
        UserView(USER, "id-u", True, CredentialView(
            2, NOW + timedelta(days=3), drift=ReasonCode.DRIFT_IDENTITY_MISSING), None, True),
        listed(), ActionKind.REPAIR, ReasonCode.DRIFT_IDENTITY_MISSING, "drifted",
        "identity deleted outside syncd", TaskKind.REPAIR),
    # verify_due (overdue: the first pass has no slice, only overdue users are verified)
    Row("last verified verify_every ago", credential(verified=timedelta(days=7)), listed(),
        ActionKind.VERIFY, ReasonCode.VERIFY_DUE, "verify_due",
        "verification due (last verified 2026-11-23)", TaskKind.VERIFY),
    Row("never verified, issued verify_every ago", credential(issued=timedelta(days=8)),
        listed(), ActionKind.VERIFY, ReasonCode.VERIFY_DUE, "verify_due",
        "verification due (never verified; issued 2026-11-22)", TaskKind.VERIFY),
    Row("verified within verify_every", credential(verified=timedelta(days=6, hours=23)),
        listed(), None, None, None),
    Row("overdue, but disabled in the directory",
        credential(verified=timedelta(days=9)), listed(enabled=False), ActionKind.DEPROVISION,
        ReasonCode.DISABLED_IN_DIRECTORY, "left_or_disabled",
        "disabled or suspended in the directory", TaskKind.DEPROVISION),
]


# retire_due (superseded key pairs disabled, disabled ones obliterated) and the renewal guards
# (too_young_to_renew, issuer_expiring): rows with a policy of their own.
RETIRING = Policy(
    renew_before=timedelta(days=30), max_deprovision="100%", deprovision_after=timedelta(hours=1),
    superseded_disable_after=timedelta(days=90), obliterate_after=timedelta(days=60),
)
EAGER = Policy(renew_before=timedelta(days=200), max_deprovision="100%")
"""renew_before 200 days against a 365-day certificate: due as soon as it is issued."""


def retiring(*retired: RetiredKeyPair, wanted: bool = True) -> UserView:
    """A user with earlier key pairs: active generation 3, or (departed) nothing active."""
    active = CredentialView(3, NOW + timedelta(days=300)) if wanted else None
    return UserView(USER, "id-u", wanted, active, None, wanted,
                    None if wanted else NOW - timedelta(days=90), retired=retired)


def superseded(generation: int, days_ago: int) -> RetiredKeyPair:
    return RetiredKeyPair(generation, KeyPairStatus.SUPERSEDED,
                          superseded_at=NOW - timedelta(days=days_ago))


def disabled(generation: int, days_ago: int) -> RetiredKeyPair:
    return RetiredKeyPair(generation, KeyPairStatus.DISABLED,
                          superseded_at=NOW - timedelta(days=400),
                          disabled_at=NOW - timedelta(days=days_ago))


def issued(days_ago: float, valid_days: float) -> UserView:
    """Active generation 2, issued ``days_ago`` with ``valid_days`` of validity."""
    start = NOW - timedelta(days=days_ago)
    active = CredentialView(
        2, start + timedelta(days=valid_days), not_before=start, verified_at=NOW
    )  # verified just now: the rotating verification leaves it alone
    return UserView(USER, "id-u", True, active, None, True)


TABLE += [
    # retire_due
    Row("superseded longer than superseded_disable_after",
        retiring(superseded(1, 91)), listed(), ActionKind.RETIRE,
        ReasonCode.SUPERSEDED_DISABLE_DUE, "retire_due",
        "key pair generation 1 superseded on 2026-08-31, more than 90d ago "
        "(policy.superseded_disable_after): disable", TaskKind.RETIRE, policy=RETIRING),
    Row("two superseded, one due", retiring(superseded(1, 120), superseded(2, 10)), listed(),
        ActionKind.RETIRE, ReasonCode.SUPERSEDED_DISABLE_DUE, "retire_due",
        "key pair generation 1 superseded on 2026-08-02, more than 90d ago "
        "(policy.superseded_disable_after): disable", TaskKind.RETIRE, policy=RETIRING),
    Row("superseded within superseded_disable_after", retiring(superseded(1, 89)), listed(),
        None, None, None, policy=RETIRING),
    Row("superseded long ago, policy off (the default)", retiring(superseded(1, 900)),
        listed(), None, None, None),
    Row("disabled longer than obliterate_after", retiring(disabled(1, 61)), listed(),
        ActionKind.RETIRE, ReasonCode.OBLITERATE_DUE, "retire_due",
        "key pair generation 1 disabled on 2026-09-30, more than 60 days ago "
        "(policy.obliterate_after_days): obliterate", TaskKind.RETIRE, policy=RETIRING),
    Row("a departed user's disabled key pairs", retiring(disabled(1, 70), disabled(2, 70),
        wanted=False), None, ActionKind.RETIRE, ReasonCode.OBLITERATE_DUE, "retire_due",
        "key pair generations 1, 2 disabled on 2026-09-21, more than 60 days ago "
        "(policy.obliterate_after_days): obliterate", TaskKind.RETIRE, policy=RETIRING),
    Row("a departed user's disabled key pairs, policy off",
        retiring(disabled(1, 700), wanted=False), None, None, None, None),
    Row("disabled within obliterate_after", retiring(disabled(1, 59)), listed(), None, None,
        None, policy=RETIRING),
    Row("obliterate_after below Gmail's 30 days waits 31",
        retiring(disabled(1, 30)), listed(), None, None, None,
        policy=Policy(timedelta(days=30), "100%", obliterate_after=timedelta(days=1))),
    Row("disabling comes before obliterating",
        retiring(disabled(1, 61), superseded(2, 91)), listed(), ActionKind.RETIRE,
        ReasonCode.SUPERSEDED_DISABLE_DUE, "retire_due",
        "key pair generation 2 superseded on 2026-08-31, more than 90d ago "
        "(policy.superseded_disable_after): disable", TaskKind.RETIRE, policy=RETIRING),
    # a departed user's RETIRE task goes on (and is not mistaken for something to deprovision)
    Row("a departed user's interrupted retire",
        replace(retiring(disabled(1, 70), wanted=False),
                open_task=task(TaskKind.RETIRE, TaskStatus.RUNNING)), None, ActionKind.RESUME,
        ReasonCode.TASK_INTERRUPTED, "unfinished_task", "retire interrupted at upload_keypair",
        TaskKind.RETIRE, policy=RETIRING),
    Row("a departed user's failed retire, waiting for its next attempt",
        replace(retiring(disabled(1, 70), wanted=False),
                open_task=task(TaskKind.RETIRE, TaskStatus.FAILED, due=NOW + timedelta(hours=1))),
        None, HOLD, ReasonCode.BACKOFF_PENDING, "unfinished_task",
        "retire failed at upload_keypair (3 attempts); next try after 2026-11-30 13:00Z: "
        "503 backendError", policy=RETIRING),
    Row("a departed user's retire failed permanently",
        replace(retiring(disabled(1, 70), wanted=False),
                open_task=task(TaskKind.RETIRE, TaskStatus.FAILED, permanent=True)),
        None, HOLD, ReasonCode.PERMANENT_FAILURE, "permanent_failure",
        "permanent failure at upload_keypair: 400 invalid certificate; fix the cause, then "
        "syncd resync --user u@x.com", policy=RETIRING),
    # expiring: the half-validity guard (a renewal cannot loop)
    Row("renewed in this pass: too young to renew again", issued(0, 365), listed(), None, None,
        None, policy=EAGER),
    Row("younger than half its validity", issued(182, 365), listed(), None, None, None,
        policy=EAGER),
    Row("older than half its validity", issued(183, 365), listed(), ActionKind.RENEW,
        ReasonCode.EXPIRING, "expiring", "certificate (generation 2) expires 2027-05-31",
        TaskKind.RENEW, policy=EAGER),
    Row("no issue date known: renewed when due", known(expires_in=timedelta(days=10)),
        listed(), ActionKind.RENEW, ReasonCode.EXPIRING, "expiring",
        "certificate (generation 2) expires 2026-12-10", TaskKind.RENEW, policy=EAGER),
    # expiring: the issuing CA ends first
    Row("cut short by an expiring issuer", issued(1, 10), listed(), HOLD,
        ReasonCode.ISSUER_EXPIRING, "expiring",
        "certificate (generation 2) expires 2026-12-09: certificates cannot outlive the issuing "
        "CA (expires 2026-12-09); import a new CA and set ca.label",
        policy=Policy(timedelta(days=30), "100%", issuer_not_after=NOW + timedelta(days=9))),
    Row("issuer expiring, a renewal still reaches further", issued(355, 365), listed(),
        ActionKind.RENEW, ReasonCode.EXPIRING, "expiring",
        "certificate (generation 2) expires 2026-12-10", TaskKind.RENEW,
        policy=Policy(timedelta(days=30), "100%", issuer_not_after=NOW + timedelta(days=20))),
    Row("issuer expiring, certificate not due yet", issued(1, 365), listed(), None, None, None,
        policy=Policy(timedelta(days=30), "100%", issuer_not_after=NOW + timedelta(days=20))),
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
    result = plan(Snapshot("static", NOW, listed_users, skipped), views, row.policy, NOW)
    mine: list[Action | Hold] = [a for a in result.actions if a.email == USER]
    mine += [h for h in result.held if h.email == USER]
    assert BYSTANDER not in {a.email for a in result.actions}
    assert len(mine) <= 1
    return mine[0] if mine else None


def deciding_rule(row: Row) -> str | None:
    views = [row.state] if row.state is not None else []
    due = USER in verification_slice(views, row.policy, NOW, None)
    renamed_from = row.state.email if row.state and row.state.email != USER else None
    subject = Subject(USER, row.entry, row.state, row.policy, NOW, row.unusable,
                      verify_due=due, renamed_from=renamed_from)
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
