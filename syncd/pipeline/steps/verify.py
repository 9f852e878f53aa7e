"""The rotating verification: the identity exists and points at syncd's key pair, the key pair
is enabled, the KMS key is active; what differs is recorded as drift for the next plan.

Owned by issue 15 item 1 (a stub until then).
"""

from __future__ import annotations

from syncd.pipeline.steps.base import Outcome, Services, Work


def verify_credential(work: Work, services: Services) -> Outcome:
    return Outcome()
