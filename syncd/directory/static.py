"""The ``static`` source: users from a YAML or CSV file, for small organisations and demos.

YAML: a list of mappings (or ``{users: [...]}``) with ``email``, ``id`` and optional
``enabled`` (default true). CSV: a header row with ``email``, ``id`` and optional ``enabled``
(true/false, yes/no, 1/0), separated by ``,`` or (as spreadsheets save it in many locales)
``;``, which the header line decides; a UTF-8 byte order mark is ignored. Both take an
optional ``aliases``: the user's other addresses (for ``certificate.include_aliases``), a YAML
list or, in either format, one text with the addresses separated by ``;`` (a CSV cell in
quotes when the file itself is ``;``-separated). Both take an optional ``org_unit`` (a text
such as ``/Pilot``) and ``groups`` (like ``aliases``), which ``policy.rollout_order`` matches.
A file that is
missing or cannot be parsed is a SourceError; a bad entry is skipped and named by its position
(``users.csv line 7``, ``users.yaml entry 3``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from syncd.directory.base import RawEntry, Snapshot, SourceError, build_snapshot
from syncd.directory.yaml_list import NotAList, read_list

_TRUE = {"true", "yes", "1", "y", "on", ""}
_FALSE = {"false", "no", "0", "n", "off"}


def _enabled(value: Any) -> bool | str:
    """The flag, or a message saying why it is not one."""
    if isinstance(value, bool):
        return value
    if value is None:
        return True
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return f"enabled must be true or false, not {value!r}"


def _org_unit(value: Any) -> str | None:
    return None if value is None or not str(value).strip() else str(value).strip()


def _aliases(value: Any) -> tuple[object, ...]:
    """An ``aliases`` value as a tuple: a list as it is, a text split on ``;``."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(value)
    return tuple(part for part in str(value).split(";") if part.strip())


def csv_delimiter(text: str) -> str:
    """``;`` when the header line has more of them than commas (a spreadsheet's export in
    locales where the comma is the decimal mark), else ``,``."""
    header = text.split("\n", 1)[0]
    return ";" if header.count(";") > header.count(",") else ","


class StaticSource:
    name = "static"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM dropped
        except FileNotFoundError:
            raise SourceError(f"directory.static.path: file not found: {self.path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"directory.static.path: cannot read {self.path}: {exc}") from None

    def _yaml_entries(self, text: str) -> list[RawEntry]:
        """The file's users, read one at a time (:mod:`syncd.directory.yaml_list`): a file of
        100,000 users is never held as one parsed document."""
        try:
            return read_list(text, "users", self._yaml_entry)
        except yaml.YAMLError as exc:
            raise SourceError(f"{self.path}: invalid YAML: {exc}") from None
        except NotAList:
            raise SourceError(
                f"{self.path}: expected a list of users (or a 'users:' list)"
            ) from None

    def _yaml_entry(self, number: int, item: Any) -> RawEntry:
        return _entry(f"{self.path.name} entry {number}", item if isinstance(item, dict) else {})

    def _csv_entries(self, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
        reader = csv.DictReader(io.StringIO(text), delimiter=csv_delimiter(text))
        fields = {name.strip().lower() for name in reader.fieldnames or []}
        if not {"email", "id"} <= fields:
            raise SourceError(f"{self.path}: the CSV header must name the columns email and id")
        for row in reader:
            cleaned = {(k or "").strip().lower(): v for k, v in row.items()}
            yield f"{self.path.name} line {reader.line_num}", cleaned

    def read(self, now: datetime) -> Snapshot:
        text = self._text()
        if self.path.suffix.lower() == ".csv":
            entries = [_entry(where, row) for where, row in self._csv_entries(text)]
        else:
            entries = self._yaml_entries(text)
        del text
        return build_snapshot(self.name, entries, now)


def _entry(where: str, row: dict[str, Any]) -> RawEntry:
    """One user's row (a YAML mapping, a CSV line) as the entry it reads as."""
    enabled = _enabled(row.get("enabled"))
    if isinstance(enabled, str):
        return RawEntry(where, row.get("email"), row.get("id"), problem=enabled)
    groups = tuple(str(g) for g in _aliases(row.get("groups")))
    return RawEntry(
        where,
        row.get("email"),
        row.get("id"),
        enabled,
        aliases=_aliases(row.get("aliases")),
        org_unit=_org_unit(row.get("org_unit")),
        groups=groups,
    )
