"""What a PyKMIP server holds, read with PyKMIP's own client (not through syncd): every object
the test client can see, with its type, names and state. Tests judge syncd's bookkeeping
against this."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from tests.kmip.server import PyKmipServer
from tests.kmip.test_kmip_commands import pykmip_client


@dataclass(frozen=True)
class HeldObject:
    uid: str
    kind: str
    """KMIP object type, lower case: private_key, public_key, certificate..."""
    names: tuple[str, ...]
    state: str
    """KMIP state, lower case: active, pre_active, deactivated, compromised..."""


def held_objects(server: PyKmipServer) -> list[HeldObject]:
    """Every object in the server (Locate with no filter), with Get Attributes of each."""
    held = []
    with pykmip_client(server) as client:
        for uid in client.locate():
            _, attributes = client.get_attributes(str(uid), ["Object Type", "State", "Name"])
            names: list[str] = []
            kind = state = ""
            for attribute in attributes:
                value = attribute.attribute_value
                match attribute.attribute_name.value:
                    case "Name":
                        names.append(str(value.name_value.value))
                    case "Object Type":
                        kind = value.value.name.lower()
                    case "State":
                        state = value.value.name.lower()
            held.append(HeldObject(str(uid), kind, tuple(names), state))
    return held


def by_name(objects: list[HeldObject], kind: str) -> dict[str, list[HeldObject]]:
    """The objects of one type, grouped by each name they carry."""
    grouped: dict[str, list[HeldObject]] = defaultdict(list)
    for obj in objects:
        if obj.kind == kind:
            for name in obj.names:
                grouped[name].append(obj)
    return dict(grouped)
