"""A long YAML list read one item at a time: the static source's file of 100,000 users.

``yaml.load`` composes the whole document (a node per mapping, key and value) before
constructing anything: at 100,000 users that tree alone is about 260 MB, and building it
(the libyaml composer, then the constructor walking it) takes longer than reading the file
item by item. :func:`read_list` takes libyaml's event stream (its C parser) and PyYAML's own
composer and safe constructor, and composes and constructs one item of the list at a time,
handing each to ``convert`` before composing the next: the values are the ones
``yaml.load(text, Loader=CSafeLoader)`` gives (tags, anchors and aliases included), the
memory that of one item.

The list is the document itself, or the value of a top-level ``key`` (``users:``). Any
document outside that plain shape (a top-level merge key or non-scalar key, the key given
twice, an anchor or explicit tag on the list itself, a scalar or null where the list goes,
more than one document) is read again whole with ``yaml.load``: same result, same errors, the
streaming only skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import (
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.resolver import Resolver

T = TypeVar("T")

# libyaml's loader when PyYAML was built with it: ten times faster on a large file.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MERGE = "tag:yaml.org,2002:merge"


class NotAList(ValueError):
    """The document is neither a list nor a mapping whose ``key`` holds one (or null)."""


class _Whole(Exception):
    """The document is outside the plain shape streamed here: read it whole."""


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _ItemLoader(CParser, Composer, SafeConstructor, Resolver):
        """libyaml's parser (events, in C) under PyYAML's composer and safe constructor."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    def _loader(text: str) -> Any:
        return _ItemLoader(text)

else:  # pragma: no cover - PyYAML without libyaml: the pure-Python loader has the same parts

    def _loader(text: str) -> Any:
        return yaml.SafeLoader(text)


def read_list(text: str, key: str, convert: Callable[[int, Any], T]) -> list[T]:
    """``convert(number, item)`` of every item (numbered from 1) of the document's list: the
    document itself, or its top-level ``key``'s value. An empty document or a null list is
    an empty list. Raises :class:`NotAList`, or ``yaml.YAMLError`` for invalid YAML."""
    loader = _loader(text)
    try:
        return _stream(loader, key, convert)
    except _Whole:
        pass
    finally:
        loader.dispose()
    return _items(yaml.load(text, Loader=SAFE_LOADER), key, convert)


def _items(data: Any, key: str, convert: Callable[[int, Any], T]) -> list[T]:
    """The list in a document read whole, converted."""
    if isinstance(data, dict) and key in data:
        data = data[key]
    if data is None:
        return []
    if not isinstance(data, list):
        raise NotAList
    return [convert(number, item) for number, item in enumerate(data, start=1)]


def _plain(event: Any) -> bool:
    """A collection start without an anchor or an explicit tag."""
    return event.anchor is None and event.implicit


def _stream(loader: Any, key: str, convert: Callable[[int, Any], T]) -> list[T]:
    loader.get_event()  # stream start
    if loader.check_event(StreamEndEvent):
        return []  # no document: null
    loader.get_event()  # document start
    start = loader.peek_event()
    if isinstance(start, SequenceStartEvent) and _plain(start):
        found = _stream_sequence(loader, convert)
    elif isinstance(start, MappingStartEvent) and _plain(start):
        found = _stream_mapping(loader, key, convert)
    else:
        raise _Whole
    loader.get_event()  # document end
    if not loader.check_event(StreamEndEvent):
        raise _Whole  # another document: yaml.load says so
    return found


def _stream_sequence(loader: Any, convert: Callable[[int, Any], T]) -> list[T]:
    loader.get_event()  # sequence start
    found = []
    number = 0
    while not loader.check_event(SequenceEndEvent):
        number += 1
        item = loader.construct_document(loader.compose_node(None, None))
        found.append(convert(number, item))
    loader.get_event()  # sequence end
    return found


def _stream_mapping(loader: Any, key: str, convert: Callable[[int, Any], T]) -> list[T]:
    """The top-level mapping's ``key`` streamed; other values composed (their anchors kept
    for aliases in the list) and dropped."""
    loader.get_event()  # mapping start
    found: list[T] | None = None
    while not loader.check_event(MappingEndEvent):
        if not loader.check_event(ScalarEvent):
            raise _Whole
        name_node = loader.compose_node(None, None)
        if name_node.tag == _MERGE:
            raise _Whole
        name = loader.construct_document(name_node)
        if name != key:
            loader.compose_node(None, None)
            continue
        if found is not None:
            raise _Whole  # the key twice: the last one counts
        value = loader.peek_event()
        if not (isinstance(value, SequenceStartEvent) and _plain(value)):
            raise _Whole
        found = _stream_sequence(loader, convert)
    loader.get_event()  # mapping end
    if found is None:
        raise NotAList  # a mapping without the key
    return found
