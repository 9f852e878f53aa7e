"""Earlier key pairs: superseded ones disabled after ``policy.superseded_disable_after``,
disabled ones obliterated after ``policy.obliterate_after`` (opt-in; Gmail's 30 days at least).

Owned by issue 15 item 4 (stubs until then).
"""

from __future__ import annotations

from syncd.plan.views import Decision, Subject


def retire_due(s: Subject) -> Decision:
    return None
