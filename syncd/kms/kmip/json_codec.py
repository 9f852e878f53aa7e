"""The JSON TTLV codec: KMIP items as Cosmian KMS writes them in JSON, nothing vendor-specific
beyond that shape (the requests and readers of Cosmian's operations are in json_ttlv.py).

Cosmian writes a KMIP item as ``{"tag": name, "type": kind, "value": v}``: a Structure's value
is the list of its items (newer servers omit ``"type"`` on structures), a ByteString is upper
case hex, an Enumeration its variant's name (or ``0x`` hex), a LongInteger ``0x`` hex, a
DateTime RFC 3339. :class:`Item` is one decoded item; :func:`decode` / :func:`encode` convert.

Everything here is pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal[
    "Structure", "Integer", "LongInteger", "BigInteger", "Enumeration", "Boolean",
    "TextString", "ByteString", "DateTime", "Interval", "DateTimeExtended",
]


class TtlvError(ValueError):
    """A JSON TTLV document that is not what it should be; the message says where."""


@dataclass(frozen=True)
class Item:
    """One TTLV item. ``value``: a tuple of Items (Structure), int, bool, str (TextString and
    Enumeration), bytes (ByteString), datetime (DateTime)."""

    tag: str
    kind: Kind
    value: Any

    def children(self, tag: str) -> list[Item]:
        """The items of this structure named ``tag``, in order."""
        if self.kind != "Structure":
            raise TtlvError(f"{self.tag} is a {self.kind}, not a Structure")
        return [child for child in self.value if child.tag == tag]

    def child(self, tag: str) -> Item | None:
        found = self.children(tag)
        return found[0] if found else None

    def need(self, tag: str) -> Item:
        found = self.child(tag)
        if found is None:
            raise TtlvError(f"{self.tag} has no {tag}")
        return found

    def text(self, tag: str) -> str:
        value = self.need(tag).value
        if not isinstance(value, str):
            raise TtlvError(f"{self.tag}.{tag} is not text")
        return value

    def find(self, *path: str) -> Item | None:
        """The first item down ``path`` (each step a child tag), or None."""
        item: Item | None = self
        for tag in path:
            if item is None or item.kind != "Structure":
                return None
            item = item.child(tag)
        return item


# --- constructors ------------------------------------------------------------------------------


def struct(tag: str, *children: Item | None) -> Item:
    """A Structure; None children are left out (optional fields)."""
    return Item(tag, "Structure", tuple(child for child in children if child is not None))


def text(tag: str, value: str) -> Item:
    return Item(tag, "TextString", value)


def enum(tag: str, value: str) -> Item:
    return Item(tag, "Enumeration", value)


def integer(tag: str, value: int) -> Item:
    return Item(tag, "Integer", value)


def boolean(tag: str, value: bool) -> Item:
    return Item(tag, "Boolean", value)


def byte_string(tag: str, value: bytes) -> Item:
    return Item(tag, "ByteString", bytes(value))


def date_time(tag: str, value: dt.datetime) -> Item:
    return Item(tag, "DateTime", value.astimezone(dt.UTC).replace(microsecond=0))


# --- codec -------------------------------------------------------------------------------------


def _hex_int(text_value: str, where: str) -> int:
    if not re.fullmatch(r"0x[0-9A-Fa-f]+", text_value):
        raise TtlvError(f"{where}: {text_value!r} is not 0x-prefixed hex")
    return int(text_value, 16)


def _parse_datetime(value: Any, where: str) -> dt.datetime:
    if isinstance(value, str) and value.startswith("0x"):
        return dt.datetime.fromtimestamp(_hex_int(value, where), dt.UTC)
    if not isinstance(value, str):
        raise TtlvError(f"{where}: DateTime {value!r} is not a string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TtlvError(f"{where}: {value!r} is not an RFC 3339 date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _scalar(kind: str, value: Any, where: str) -> Any:
    if kind in ("Integer", "Interval"):
        if isinstance(value, str):
            return _hex_int(value, where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TtlvError(f"{where}: {kind} {value!r} is not a number")
        return value
    if kind in ("LongInteger", "BigInteger", "DateTimeExtended"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _hex_int(value, where)
        raise TtlvError(f"{where}: {kind} {value!r} is neither a number nor hex")
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise TtlvError(f"{where}: Boolean {value!r} is not true or false")
        return value
    if kind in ("TextString", "Enumeration"):
        if not isinstance(value, str):
            raise TtlvError(f"{where}: {kind} {value!r} is not a string")
        return value
    if kind == "ByteString":
        if not isinstance(value, str):
            raise TtlvError(f"{where}: ByteString {value!r} is not a hex string")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise TtlvError(f"{where}: ByteString is not hex") from None
    if kind == "DateTime":
        return _parse_datetime(value, where)
    raise TtlvError(f"{where}: unknown TTLV type {kind!r}")


def decode(document: Any, where: str = "") -> Item:
    """An Item from parsed JSON (``json.loads`` output)."""
    if not isinstance(document, dict) or not isinstance(document.get("tag"), str):
        raise TtlvError(f"{where or 'document'}: not a TTLV object with a tag")
    tag: str = document["tag"]
    here = f"{where}.{tag}" if where else tag
    value = document.get("value")
    kind = document.get("type", "Structure" if isinstance(value, list) else None)
    if kind == "Structure":
        if not isinstance(value, list):
            raise TtlvError(f"{here}: a Structure's value must be a list")
        return Item(tag, "Structure", tuple(decode(child, here) for child in value))
    if not isinstance(kind, str):
        raise TtlvError(f"{here}: no type")
    return Item(tag, kind, _scalar(kind, value, here))  # type: ignore[arg-type]


def encode(item: Item) -> dict[str, Any]:
    """The JSON form Cosmian's clients write (``type`` present on structures too)."""
    value: Any = item.value
    if item.kind == "Structure":
        value = [encode(child) for child in item.value]
    elif item.kind == "ByteString":
        value = item.value.hex().upper()
    elif item.kind == "DateTime":
        value = item.value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif item.kind in ("LongInteger", "DateTimeExtended"):
        value = f"0x{item.value & 0xFFFFFFFFFFFFFFFF:016X}"
    return {"tag": item.tag, "type": item.kind, "value": value}


def loads(body: bytes | str) -> Item:
    try:
        return decode(json.loads(body))
    except json.JSONDecodeError as exc:
        raise TtlvError(f"not JSON: {exc.msg} at character {exc.pos}") from None


def dumps(item: Item) -> bytes:
    return json.dumps(encode(item), separators=(",", ":")).encode()


def canonical(item: Item) -> Any:
    """A comparable form in which the order of a structure's items does not matter."""
    if item.kind == "Structure":
        return (item.tag, "Structure",
                tuple(sorted((canonical(child) for child in item.value), key=repr)))
    return (item.tag, item.kind, item.value)
