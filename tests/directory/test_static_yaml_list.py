"""The static source's YAML list read item by item (syncd.directory.yaml_list): the same
values and the same errors as ``yaml.load`` of the whole document, for every shape of file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from syncd.directory.yaml_list import SAFE_LOADER, NotAList, read_list


def _whole(text: str) -> list[tuple[int, Any]]:
    """What the static source read before: the whole document, then its list."""
    data = yaml.load(text, Loader=SAFE_LOADER)
    if isinstance(data, dict) and "users" in data:
        data = data["users"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise NotAList
    return list(enumerate(data, start=1))


DOCUMENTS = [
    "",
    "# only a comment\n",
    "---\n",
    "users:\n",
    "users: []\n",
    "[]\n",
    "- {email: a@example.com, id: 1}\n- {email: b@example.com, id: 0x1F, enabled: no}\n",
    "users:\n  - email: a@example.com\n    id: a1\n    aliases: [x@example.com]\n  - plain\n",
    # values resolved as YAML 1.1 does: booleans, numbers, timestamps, nulls, quoted strings
    "- {email: 'a@example.com', id: 2001-12-14, enabled: off}\n- {id: ~, enabled: 'no'}\n",
    # anchors and aliases across items, and from another top-level key
    "defaults: &d {enabled: false}\nusers:\n  - {<<: *d, email: a@example.com, id: a1}\n"
    "  - &b {email: b@example.com, id: b1}\n  - *b\n",
    # other keys before and after the list, nested values
    "version: 2\nusers:\n  - {email: a@example.com, id: a1, groups: [g1, g2]}\nnote: {x: [1]}\n",
    # explicit tags on items and values
    "- !!map {email: a@example.com, id: !!str 12}\n- !!str text\n",
    # shapes read whole: a tagged or anchored list, the key twice, a top-level merge key
    "users: !!seq [{email: a@example.com, id: a1}]\n",
    "users: &all [{email: a@example.com, id: a1}]\n",
    "users: [{email: a@example.com, id: a1}]\nusers: [{email: b@example.com, id: b1}]\n",
    "base: &b {users: [{email: a@example.com, id: a1}]}\n<<: *b\n",
    "? [complex, key]\n: 1\nusers: [{email: a@example.com, id: a1}]\n",
    "--- !!seq\n- {email: a@example.com, id: a1}\n",
    "&top\n- {email: a@example.com, id: a1}\n",
    '"users": [{email: a@example.com, id: a1}]\n',
    # not a list
    "users: {alice: 1}\n",
    "just text\n",
    "42\n",
    "other: [1, 2]\n",
    "users: 7\n",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_same_items_as_the_whole_document(text: str) -> None:
    try:
        expected: Any = _whole(text)
    except (NotAList, yaml.YAMLError) as error:
        with pytest.raises(type(error)):
            read_list(text, "users", lambda number, item: (number, item))
        return
    assert read_list(text, "users", lambda number, item: (number, item)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "users: [unclosed",
        "- {email: a@example.com\n",
        "- a\n- *undefined\n",
        "- a\n---\n- b\n",  # two documents
        "users:\n  - a\n  - b\n---\nmore\n",
        "users:\n  - a\n   bad indentation: x\n",
    ],
)
def test_invalid_yaml_raises_as_the_whole_document_does(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as whole:
        yaml.load(text, Loader=SAFE_LOADER)
    with pytest.raises(yaml.YAMLError) as streamed:
        read_list(text, "users", lambda number, item: item)
    assert type(streamed.value) is type(whole.value)
    # PyYAML's composer names an undefined alias where libyaml's does not; otherwise alike
    assert str(streamed.value).splitlines()[0].startswith(str(whole.value).splitlines()[0])


def test_each_item_is_converted_before_the_next_is_composed() -> None:
    """One item at a time: ``convert`` sees item n before item n+1 is parsed (an error later
    in the file comes after the earlier items were converted)."""
    seen: list[int] = []
    with pytest.raises(yaml.YAMLError):
        read_list("- a\n- b\n- [unclosed\n", "users", lambda number, item: seen.append(number))
    assert seen == [1, 2]
