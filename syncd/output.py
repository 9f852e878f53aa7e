"""Rendering command output: readable tables on a terminal, stable JSON for scripts.

Every listing command prints either a table (``--format table``, the default) or one JSON
document (``--format json``) whose top-level keys are documented in docs/cli.md. Columns are
measured in terminal cells (wcwidth), so CJK and emoji, two cells each, keep them aligned.

This module is shared by the command line and :mod:`syncd.report`, so it stays outside
``syncd.cli`` (the report must not import the command line).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import IO, Any, Literal

Format = Literal["table", "json"]
Column = tuple[str, str]  # (key in the row, header shown)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=_json_default)


def display_width(text: str) -> int:
    """Terminal cells ``text`` takes: 2 for wide characters (CJK, emoji), 0 for combining
    marks; a control character counts as 1 (it is shown as itself, not measured as -1)."""
    from wcwidth import wcswidth, wcwidth

    width = wcswidth(text)
    if width >= 0:
        return width
    return sum(cells if (cells := wcwidth(char)) >= 0 else 1 for char in text)


def pad(text: str, width: int) -> str:
    """``text`` left-justified to ``width`` terminal cells (``str.ljust`` counts characters)."""
    return text + " " * max(width - display_width(text), 0)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Rows aligned under their headers; an empty listing says so."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [
        max(display_width(headers[i]), *(display_width(line[i]) for line in cells))
        for i in range(len(columns))
    ]
    lines = ["  ".join(pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(pad(c, w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )
    return "\n".join(lines)


def render_record(record: Mapping[str, Any], labels: Sequence[Column] | None = None) -> str:
    """One object as aligned ``label: value`` lines."""
    pairs = [(label, record.get(key)) for key, label in labels] if labels else list(record.items())
    width = max((display_width(label) for label, _ in pairs), default=0)
    return "\n".join(f"{pad(label, width)}  {_cell(value)}" for label, value in pairs)


def emit_listing(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    fmt: Format,
    stream: IO[str] | None = None,
) -> None:
    """Print a listing: a table, or ``{"<name>": [rows...]}`` as JSON."""
    out = stream or sys.stdout
    if fmt == "json":
        print(to_json({name: list(rows)}), file=out)
    else:
        print(render_table(rows, columns), file=out)


def emit_record(
    name: str,
    record: Mapping[str, Any],
    fmt: Format,
    labels: Sequence[Column] | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Print one object: aligned lines, or ``{"<name>": {...}}`` as JSON."""
    out = stream or sys.stdout
    if fmt == "json":
        print(to_json({name: dict(record)}), file=out)
    else:
        print(render_record(record, labels), file=out)
