"""Who a directory entry is: renames (same directory id, new address) and reused addresses
(same address, another directory id).

Owned by issue 15 item 2 (stubs until then).
"""

from __future__ import annotations

from collections.abc import Mapping

from syncd.directory.base import DirectoryUser
from syncd.plan.views import Decision, Subject, UserView


def pair_renames(
    listed: Mapping[str, DirectoryUser], known: Mapping[str, UserView]
) -> dict[str, UserView]:
    """New address -> the state store's view of the same directory id under its old address."""
    return {}


def renamed(s: Subject) -> Decision:
    return None


def address_reused(s: Subject) -> Decision:
    return None
