"""Configuration drift and CA rollover: credentials issued with settings that changed since
(key size, hash, subject template, CRL/AIA URLs, issuing CA, aliases) are re-issued, at most
``policy.reissue_per_pass`` a pass.

Owned by issue 15 item 3 (stubs until then).
"""

from __future__ import annotations

from collections.abc import Sequence

from syncd.plan.views import Action, Decision, Policy, Subject


def config_changed(s: Subject) -> Decision:
    return None


def throttle(actions: Sequence[Action], policy: Policy, managed: int) -> tuple[list[Action], int]:
    """The actions with config_changed re-issues beyond ``policy.reissue_per_pass`` left out,
    and how many were left out."""
    return list(actions), 0
