"""Earlier key pairs: superseded ones disabled (policy.superseded_disable_after), disabled ones
obliterated (policy.obliterate_after_days).

Owned by issue 15 item 4 (stubs until then).
"""

from __future__ import annotations

from syncd.pipeline.steps.base import Outcome, Services, Work


def disable_superseded(work: Work, services: Services) -> Outcome:
    return Outcome()


def obliterate_disabled(work: Work, services: Services) -> Outcome:
    return Outcome()
