"""syncd's domain vocabulary in one place: the kinds and statuses the state store records and
the plan decides, as string enums.

Each is a ``StrEnum`` whose values are the strings stored in the database and printed in
JSON, so a member compares equal to, formats as and serialises as its value. Code compares
members (``work.kind is TaskKind.PROVISION``), which mypy checks; strings read from outside
(the database, tests building views) are converted at the boundary (``TaskKind(text)``).
Only the standard library is imported here: every part of syncd may use this module.
"""

from __future__ import annotations

import enum


class ActionKind(enum.StrEnum):
    """What the plan decides for one user."""

    PROVISION = "provision"  # new in scope, or back in scope
    RESUME = "resume"  # an unfinished task continues from its checkpoint
    RETRY = "retry"  # a failed task whose backoff has elapsed
    RENEW = "renew"  # certificate about to expire: new key pair, identity patched
    DEPROVISION = "deprovision"  # left scope, disabled or suspended
    REPAIR = "repair"  # on demand: verify every step against Gmail and the KMS
    REPLACE = "replace"  # on demand (--force), or a KMS key revoked outside syncd
    VERIFY = "verify"  # the rotating check against Gmail and the KMS (policy.verify_every)
    RENAME = "rename"  # same directory id, new address: a credential for the new address
    REASSIGN = "reassign"  # same address, another directory id: old credential ended, new made
    RETIRE = "retire"  # earlier key pairs disabled or obliterated (policy.superseded_*, ...)


class TaskKind(enum.StrEnum):
    """The persistent task an action runs as (``tasks.kind``); each has its own steps."""

    PROVISION = "provision"
    RENEW = "renew"
    REPLACE = "replace"
    DEPROVISION = "deprovision"
    REPAIR = "repair"
    VERIFY = "verify"
    RENAME = "rename"
    REASSIGN = "reassign"
    RETIRE = "retire"


class TaskStatus(enum.StrEnum):
    """Where a task is (``tasks.status``)."""

    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"  # gave up for this pass; retried after next_attempt_at (unless permanent)
    DONE = "done"
    CANCELLED = "cancelled"


class KeyPairStatus(enum.StrEnum):
    """A key pair generation's life (``key_pairs.status``)."""

    PENDING = "pending"  # being created; not yet in Gmail
    ACTIVE = "active"  # in Gmail, enabled, the identity points to it
    SUPERSEDED = "superseded"  # replaced by a renewal; stays enabled so old mail decrypts
    DISABLED = "disabled"  # disabled in Gmail (deprovisioned)
    OBLITERATED = "obliterated"
    ABANDONED = "abandoned"  # a generation that never reached Gmail and never will


class KmsKeyState(enum.StrEnum):
    """A KMS key's state as the state store records it (``kms_keys.state``)."""

    ACTIVE = "active"
    REVOKED = "revoked"
    DESTROYED = "destroyed"


class ReasonCode(enum.StrEnum):
    """A stable code for each decision of the plan, beside its prose (the prose may carry
    details: dates, counts, errors; the code does not change with them)."""

    # actions
    NEW_IN_SCOPE = "new_in_scope"  # provision: never seen before
    NO_CREDENTIAL = "no_credential"  # provision: known, in scope, no active credential
    EXPIRING = "expiring"  # renew: the certificate expires within policy.renew_before
    DISABLED_IN_DIRECTORY = "disabled_in_directory"  # deprovision: listed but disabled
    LEFT_SCOPE = "left_scope"  # deprovision: missing for longer than the grace period
    TASK_INTERRUPTED = "task_interrupted"  # resume: an unfinished task
    BACKOFF_ELAPSED = "backoff_elapsed"  # retry: a failed task whose wait is over
    RESYNC_REPAIR = "resync_repair"  # repair: syncd resync
    RESYNC_REPLACE = "resync_replace"  # replace: syncd resync --force
    VERIFY_DUE = "verify_due"  # verify: in this pass's rotating slice
    DRIFT_IDENTITY_MISSING = "drift_identity_missing"  # repair: identity deleted outside syncd
    DRIFT_IDENTITY_REPOINTED = "drift_identity_repointed"  # repair: points at another key pair
    DRIFT_KEYPAIR_DISABLED = "drift_keypair_disabled"  # repair: key pair disabled outside syncd
    DRIFT_KEYPAIR_MISSING = "drift_keypair_missing"  # repair: key pair gone from Gmail
    DRIFT_KMS_KEY_REVOKED = "drift_kms_key_revoked"  # replace: KMS key revoked outside syncd
    RENAMED = "renamed"  # rename: same directory id, new address
    ADDRESS_REUSED = "address_reused"  # reassign: same address, another directory id
    CONFIG_CHANGED = "config_changed"  # renew: issued with settings that changed since
    SUPERSEDED_DISABLE_DUE = "superseded_disable_due"  # retire: superseded long enough
    OBLITERATE_DUE = "obliterate_due"  # retire: disabled long enough (opt-in)
    # holds
    UNUSABLE_ENTRY = "unusable_entry"  # named by a directory entry the source skipped
    PERMANENT_FAILURE = "permanent_failure"  # held until a resync
    MISSING_GRACE_PERIOD = "missing_grace_period"  # missing for less than deprovision_after
    BACKOFF_PENDING = "backoff_pending"  # a failed task waiting for its next attempt
    CLAIMED_BY_ANOTHER_PASS = "claimed_by_another_pass"  # its task is claimed elsewhere
    EXISTING_CREDENTIALS = "existing_credentials"  # an identity syncd did not make (hold)
    ISSUER_EXPIRING = "issuer_expiring"  # certificates cannot outlive the issuing CA
    # the whole plan
    MASS_DEPROVISION_BLOCKED = "mass_deprovision_blocked"  # over policy.max_deprovision


EXISTING_CREDENTIALS_PREFIX = "existing CSE identity for "
"""How the message of check_existing's refusal begins (an identity syncd did not make, held or
not adoptable): the plan's permanent_failure rule holds such a user with
ReasonCode.EXISTING_CREDENTIALS instead of PERMANENT_FAILURE."""


USER_REVOCATION_REASONS = (
    "keyCompromise",
    "superseded",
    "affiliationChanged",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "unspecified",
)
"""The RFC 5280 reasons ``syncd revoke`` takes for a user's certificate: a revocation is
permanent, so certificateHold (undone later) is not one; cACompromise and aACompromise are
about CAs."""


__all__ = [
    "EXISTING_CREDENTIALS_PREFIX",
    "USER_REVOCATION_REASONS",
    "ActionKind",
    "KeyPairStatus",
    "KmsKeyState",
    "ReasonCode",
    "TaskKind",
    "TaskStatus",
]
