"""A rename's last step: the identity of the address before the rename deleted (its key pair
stays enabled so old mail stays readable).

Owned by issue 15 item 2 (a stub until then).
"""

from __future__ import annotations

from syncd.pipeline.steps.base import Outcome, Services, Work


def delete_previous_identity(work: Work, services: Services) -> Outcome:
    return Outcome()
