"""Reading every user's rows in one pass, fast: JSON columns read as text and decoded once
per distinct text, and the garbage collector paused while the rows and views are built
(:mod:`syncd.pipeline.plan_state` at 100,000 users)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Text, cast


class JsonTexts:
    """JSON columns read as their text and decoded once per distinct text: 100,000 users
    share a handful of profiles and alias lists. The decoded values are shared between views,
    which only read them."""

    def __init__(self) -> None:
        self._decoded: dict[str, Any] = {}
        self._tuples: dict[str | None, tuple[Any, ...]] = {}

    def as_tuple(self, text: str | None) -> tuple[Any, ...]:
        """A JSON list (or null: empty) as a tuple, one per distinct text."""
        try:
            return self._tuples[text]
        except KeyError:
            value = self._tuples[text] = tuple(self(text) or ())
            return value

    def __call__(self, text: str | None) -> Any:
        if text is None:
            return None
        try:
            return self._decoded[text]
        except KeyError:
            value = self._decoded[text] = json.loads(text)
            return value


def json_text(column: Any) -> Any:
    """A JSON column as its stored text (decoded by :class:`JsonTexts`), same name."""
    return cast(column, Text).label(column.key)


@contextmanager
def no_gc_while_building() -> Iterator[None]:
    """The cyclic garbage collector paused while a pass builds its 100,000 rows and views:
    they make no cycles, yet each collection walks every object built so far (a third of
    load_views at 100,000 users). Collection resumes on the way out."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
