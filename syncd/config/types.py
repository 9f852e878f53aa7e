"""Value types of the configuration: paths relative to the file, and durations.

A duration is one type everywhere: a number of seconds (``90``, ``1.5``) or a string with a
unit (``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``; no unit means seconds). It must be more than
zero, except where a field says that zero means "at once" (:data:`DurationOrZero`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationInfo, WithJsonSchema


def resolve_relative(value: Path, info: ValidationInfo) -> Path:
    """``value`` taken relative to the configuration file's folder (from the context)."""
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        return Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(resolve_relative)]
"""A path in the configuration; relative paths are relative to the configuration file."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*[smhd]?\s*$"
"""The string form of a duration, as a JSON Schema pattern."""


def parse_duration(value: int | float | str, *, allow_zero: bool = False) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"2h"`` or ``"1d"``."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 10m, 2h, 1d)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("must be more than zero")
    return seconds


def _duration(value: Any) -> Any:
    return parse_duration(value)


def _duration_or_zero(value: Any) -> Any:
    return parse_duration(value, allow_zero=True)


def _duration_schema(minimum: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "number", minimum: 0},
            {"type": "string", "pattern": DURATION_PATTERN},
        ]
    }


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(_duration_schema("exclusiveMinimum")),
]
"""A duration in seconds, more than zero: ``90``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``."""

DurationOrZero = Annotated[
    float,
    BeforeValidator(_duration_or_zero),
    WithJsonSchema(_duration_schema("minimum")),
]
"""A duration where zero is allowed (it means "at once")."""
