"""Time passing, as far as syncd's state store is concerned.

syncd plans with the real clock (``datetime.now``) against the dates its state store keeps: a
certificate's ``not_before``/``not_after``, a key pair's ``superseded_at``/``disabled_at``.
Tests cannot wait months, so they move those dates back instead: the certificates themselves
(in Gmail, in the rows' PEM) keep their real dates, which no decision under test reads. The
sandbox's own clock (Gmail's 30 days before an obliterate) moves separately, through its admin
``clock`` endpoint.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from syncd.state.db import Database
from syncd.state.models import KeyPair, User

CERTIFICATE_DATES = ("not_before", "not_after")


def age_key_pairs(
    state_url: str,
    days: float,
    columns: tuple[str, ...] = CERTIFICATE_DATES,
    *,
    emails: tuple[str, ...] | None = None,
) -> int:
    """Move ``columns`` of the key pairs (of ``emails``; None: everyone's) ``days`` into the
    past, where set. Returns how many key pairs changed."""
    database = Database.open(state_url)
    changed = 0
    try:
        with database.transaction() as session:
            query = select(KeyPair).join(User, User.id == KeyPair.user_id)
            if emails is not None:
                query = query.where(User.email.in_(emails))
            for kp in session.scalars(query):
                moved = False
                for column in columns:
                    value = getattr(kp, column)
                    if value is not None:
                        setattr(kp, column, value - timedelta(days=days))
                        moved = True
                changed += moved
    finally:
        database.close()
    return changed
