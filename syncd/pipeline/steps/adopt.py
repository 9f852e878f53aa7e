"""Credentials made by hand before syncd (policy.existing_credentials): held, adopted or replaced.

Owned by issue 15 item 6 (a stub that finds nothing until then).
"""

from __future__ import annotations

from syncd.pipeline.steps.base import Outcome, Services, Work


def check_existing(work: Work, services: Services) -> Outcome:
    return Outcome()
