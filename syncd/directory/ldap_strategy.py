"""ldap3's synchronous strategy, with search entries decoded once: raw values only.

For every search entry ldap3 builds two copies of its attributes: ``raw_attributes`` (the
values as bytes) and ``attributes`` (each value decoded again to text, a second
case-insensitive dict). syncd reads only ``raw_attributes`` and decodes the few values it
needs itself; the second copy is about a fifth of the time of a large directory read.

:class:`RawValuesStrategy` decodes entries into ``raw_attributes`` only, and leaves
``attributes`` an :class:`UndecodedValues`: empty, and tolerant of what ldap3's own
post-processing does to it (its range follow-up and empty-attribute filling add and remove
keys there as they do in ``raw_attributes``). Everything else (results, controls,
references, other operations) is ldap3's own code; result codes are checked by syncd as
before (``ldap_results``). :func:`use_raw_values` puts the strategy on a connection before it
is opened.
"""

from __future__ import annotations

from typing import Any

from ldap3 import Connection
from ldap3.operation.search import raw_attributes_to_dict_fast
from ldap3.strategy.sync import SyncStrategy
from ldap3.utils.conv import to_unicode

SEARCH_RESULT_ENTRY = 4
"""protocolOp of an LDAP searchResEntry (RFC 4511)."""


class UndecodedValues(dict[str, Any]):
    """A search entry's ``attributes`` when only ``raw_attributes`` are decoded: a missing
    key reads as no values and deleting one is a no-op, so ldap3's post-processing, written
    for a full copy, runs unchanged."""

    def __missing__(self, key: str) -> list[Any]:
        return []

    def __delitem__(self, key: str) -> None:
        self.pop(key, None)


class RawValuesStrategy(SyncStrategy):  # type: ignore[misc]  # ldap3 has no type hints
    """SyncStrategy whose search entries carry ``raw_attributes`` and no decoded copy."""

    def decode_response_fast(self, ldap_message: dict[str, Any]) -> dict[str, Any]:
        if ldap_message["protocolOp"] != SEARCH_RESULT_ENTRY:
            decoded: dict[str, Any] = super().decode_response_fast(ldap_message)
            return decoded
        payload = ldap_message["payload"]
        result: dict[str, Any] = {
            "raw_dn": payload[0][3],
            "dn": to_unicode(payload[0][3], from_server=True),
            "raw_attributes": raw_attributes_to_dict_fast(payload[1][3]),
            "attributes": UndecodedValues(),
            "type": "searchResEntry",
        }
        if ldap_message["controls"]:  # as ldap3 does for every message
            result["controls"] = {}
            for control in ldap_message["controls"]:
                oid, value = self.decode_control_fast(control[3])
                result["controls"][oid] = value
        return result


def use_raw_values(connection: Connection) -> None:
    """Give a new (not yet opened) synchronous connection the :class:`RawValuesStrategy`."""
    strategy = RawValuesStrategy(connection)
    connection.strategy = strategy
    # Connection binds these to its strategy when it is made (ldap3 core/connection.py).
    connection.send = strategy.send
    connection.open = strategy.open
    connection.get_response = strategy.get_response
    connection.post_send_single_response = strategy.post_send_single_response
    connection.post_send_search = strategy.post_send_search
