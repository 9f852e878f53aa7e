"""The provisioning steps, by task kind: each task kind runs its steps in order, and the
task's ``next_step`` is its checkpoint.

The steps themselves live by concern: :mod:`.provision` (a credential made), :mod:`.repair`,
:mod:`.deprovision`, :mod:`.verify` (drift), :mod:`.rename`, :mod:`.retire` (earlier key
pairs), :mod:`.adopt` (credentials made by hand); what they share in :mod:`.base`.
"""

from __future__ import annotations

from syncd.domain import TaskKind
from syncd.pipeline.steps.adopt import check_existing
from syncd.pipeline.steps.aliases import insert_alias_identities
from syncd.pipeline.steps.base import (
    GmailKeyPairs,
    KeyPairView,
    Outcome,
    Services,
    Step,
    StepError,
    Work,
)
from syncd.pipeline.steps.deprovision import delete_identity, disable_keypairs, revoke_keys
from syncd.pipeline.steps.provision import (
    create_key,
    insert_identity,
    issue_certificate,
    upload_keypair,
)
from syncd.pipeline.steps.rename import delete_previous_identity
from syncd.pipeline.steps.repair import repair_keypair
from syncd.pipeline.steps.retire import disable_superseded, obliterate_disabled
from syncd.pipeline.steps.verify import verify_credential

_MAKE = (
    "create_key", "issue_certificate", "upload_keypair", "insert_identity",
    "insert_alias_identities",
)
_END = ("delete_identity", "disable_keypairs", "revoke_keys")

PIPELINES: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.PROVISION: ("check_existing", *_MAKE),
    TaskKind.RENEW: _MAKE,
    TaskKind.REPLACE: _MAKE,
    TaskKind.REPAIR: ("repair_keypair", "insert_identity"),
    TaskKind.DEPROVISION: _END,
    TaskKind.VERIFY: ("verify_credential",),
    TaskKind.RENAME: (*_MAKE, "delete_previous_identity"),
    TaskKind.REASSIGN: (*_END, *_MAKE),
    TaskKind.RETIRE: ("disable_superseded", "obliterate_disabled"),
}

STEPS: dict[str, Step] = {
    "check_existing": check_existing,
    "create_key": create_key,
    "issue_certificate": issue_certificate,
    "upload_keypair": upload_keypair,
    "insert_identity": insert_identity,
    "insert_alias_identities": insert_alias_identities,
    "repair_keypair": repair_keypair,
    "delete_identity": delete_identity,
    "disable_keypairs": disable_keypairs,
    "revoke_keys": revoke_keys,
    "verify_credential": verify_credential,
    "delete_previous_identity": delete_previous_identity,
    "disable_superseded": disable_superseded,
    "obliterate_disabled": obliterate_disabled,
}


def next_step(kind: TaskKind, current: str | None) -> str | None:
    """The step after ``current`` in ``kind``'s pipeline (the first when None); None at the end."""
    steps = PIPELINES[kind]
    if current is None:
        return steps[0]
    index = steps.index(current)
    return steps[index + 1] if index + 1 < len(steps) else None


__all__ = [
    "PIPELINES",
    "STEPS",
    "GmailKeyPairs",
    "KeyPairView",
    "Outcome",
    "Services",
    "Step",
    "StepError",
    "Work",
    "next_step",
]
