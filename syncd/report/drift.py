"""The report's drift section: users whose active credential the rotating verification found
changed outside syncd (not covered until repaired), and the drifts found and repaired in the
changes window. Pure, like :mod:`syncd.report.model`, which builds it.

A drift found is a ``verify.verify_credential`` audit event (the step audits only a drift, with
its reason code); a repair is a ``repair.done`` or ``replace.done`` event of a user with a drift
found before it and not repaired since (``syncd resync`` counts too: it heals the same drift).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

DRIFT_FOUND = "verify.verify_credential"
REPAIRS = ("repair.done", "replace.done")


@dataclass(frozen=True)
class DriftEventRow:
    """A drift found, or a repair that may heal one, as the audit log has it."""

    email: str
    action: str
    at: datetime
    code: str | None = None
    """The drift's reason code (drift found only)."""


@dataclass(frozen=True)
class Drifted:
    """A user whose active credential was changed outside syncd, not repaired yet."""

    email: str
    code: str
    detail: str | None
    found: datetime | None


@dataclass(frozen=True)
class Drift:
    """Users with drift now, and the drifts found and repaired after ``changes_since``."""

    users: list[Drifted] = field(default_factory=list)
    found: int = 0
    repaired: int = 0
    found_by_code: dict[str, int] = field(default_factory=dict)


def summarize(
    drifting: Sequence[Drifted], events: Sequence[DriftEventRow], since: datetime
) -> Drift:
    """The drift section: ``drifting`` now, and the events after ``since`` counted (a repair
    counts once, for the drift found before it; events before ``since`` only pair them)."""
    found, repaired = 0, 0
    by_code: dict[str, int] = {}
    unrepaired: set[str] = set()
    for event in sorted(events, key=lambda e: (e.at, e.email)):
        if event.action == DRIFT_FOUND:
            unrepaired.add(event.email)
            if event.at > since:
                found += 1
                code = event.code or "unknown"
                by_code[code] = by_code.get(code, 0) + 1
        elif event.action in REPAIRS and event.email in unrepaired:
            unrepaired.discard(event.email)
            repaired += event.at > since
    return Drift(list(drifting), found, repaired, dict(sorted(by_code.items())))
