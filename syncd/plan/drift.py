"""Drift detection: which active credentials a pass verifies (a rotating slice, so that every
one is verified at least once per ``policy.verify_every`` without a burst of API calls), and
the repair a drift found by a verification calls for.

Owned by issue 15 item 1 (stubs until then).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from syncd.plan.views import Decision, Policy, Subject, UserView


def verification_slice(
    views: Sequence[UserView], policy: Policy, now: datetime, last_pass_at: datetime | None
) -> frozenset[str]:
    """The emails this pass verifies."""
    return frozenset()


def drifted(s: Subject) -> Decision:
    """A drift the last verification found becomes its repair."""
    return None


def verify_due(s: Subject) -> Decision:
    """A user in this pass's verification slice is verified."""
    return None
