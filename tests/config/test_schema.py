"""The configuration's JSON Schema: valid JSON Schema (checked by jsonschema's own
metaschema), every field described, and config/example.yaml both valid against it and
documenting every field (as a key, given or commented out)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from syncd.config import json_schema, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"

_KEY = re.compile(r"^(?P<indent>\s*)(?:-\s+)?(?P<key>[a-z_][a-z0-9_]*):(?:\s|$)")
_COMMENTED = re.compile(r"^(?P<indent>\s*)#\s?(?P<rest>.*)$")


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _objects(schema: dict[str, Any], node: dict[str, Any], path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every object schema reachable from ``node``, with its key path (list items take the
    path of their list)."""
    node = _resolve(schema, node)
    for key in ("anyOf", "oneOf", "allOf"):
        for alternative in node.get(key, []):
            yield from _objects(schema, alternative, path)
    if "items" in node:
        yield from _objects(schema, node["items"], path)
    if "properties" in node:
        yield path, node
        for name, child in node["properties"].items():
            yield from _objects(schema, child, (*path, name))


def _schema_paths(schema: dict[str, Any]) -> set[str]:
    return {
        ".".join((*path, name))
        for path, node in _objects(schema, schema)
        for name in node["properties"]
    }


def _documented_paths(text: str) -> set[str]:
    """Key paths of example.yaml, commented-out keys included (each ``#`` and one space after
    it removed, the indentation of the rest kept); a ``- `` list item opens one item's keys."""
    paths: set[str] = set()
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines():
        line = raw
        while commented := _COMMENTED.match(line):
            line = commented["indent"] + commented["rest"]
        match = _KEY.match(line)
        if not match:
            continue
        column = match.start("key")
        while stack and stack[-1][0] >= column:
            stack.pop()
        stack.append((column, match["key"]))
        paths.add(".".join(key for _, key in stack))
    return paths


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document = json_schema()
    json.dumps(document)  # plain JSON data
    return document


def test_the_schema_is_valid_json_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_example_validates_against_the_schema(schema: dict[str, Any]) -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    jsonschema.Draft202012Validator(schema).validate(example)
    load_config(EXAMPLE)  # and syncd agrees


def test_the_schema_refuses_what_syncd_refuses(schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    refused = [
        {"directory": {"source": "ldap"}},
        {"directory": {"source": "static"}},
        {"directory": {"source": "nis", "static": {"path": "u.yaml"}}},
        {"kms": {"backend": "kmip"}},
        {"kacls": {"wrapping_key_fiel": "/etc/k"}},
        {"schedule": {"interval": "5 fortnights"}},
        {"schedule": {"interval": 0}},
    ]
    for document in refused:
        assert not validator.is_valid(document), document
    accepted = [
        {},
        {"directory": {"static": {"path": "u.yaml"}}},
        {"directory": {"source": "google", "google": {"org_units": ["/", {"path": "/S"}]}}},
        {"kms": {"backend": "kmip", "kmip": {"host": "kms"}}},
        {"kacls": {"wrapping_key_env": "KEY"}},
        {"schedule": {"interval": "10m", "jitter": 5}},
        {"policy": {"deprovision_after": 0}},
    ]
    for document in accepted:
        validator.validate(document)


def test_every_field_has_a_description(schema: dict[str, Any]) -> None:
    undescribed = [
        ".".join((*path, name))
        for path, node in _objects(schema, schema)
        for name, child in node["properties"].items()
        if not (child.get("description") or _resolve(schema, child).get("description"))
    ]
    assert undescribed == []


def test_the_example_documents_every_field(schema: dict[str, Any]) -> None:
    fields = _schema_paths(schema)
    assert {"directory.ldap.bind_password_env", "kms.kmip.token_file", "state.url"} <= fields
    missing = sorted(fields - _documented_paths(EXAMPLE.read_text()))
    assert missing == []


def test_the_documented_paths_reader() -> None:
    text = (
        "a:\n  b: 1\n  # c:\n  #   d: x\n  #   # h: y\n  #   #  - i: 1\n  #   #    j: 2\n"
        "  list:\n    - e: 1\n      f: 2\n# g: 3\n# Prose: not a key\n"
    )
    assert _documented_paths(text) == {
        "a", "a.b", "a.c", "a.c.d", "a.c.h", "a.c.h.i", "a.c.h.j", "a.list", "a.list.e",
        "a.list.f", "g",
    }


def test_syncd_config_schema_prints_the_schema_example_yaml_validates_against(
    tmp_path: Path,
) -> None:
    """The command as an administrator runs it (no configuration file needed), judged by
    jsonschema's own validator."""
    from tests.support.cli import run_syncd

    done = run_syncd(["--config", str(tmp_path / "absent.yaml"), "config", "schema"])
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == json_schema()
    jsonschema.Draft202012Validator.check_schema(printed)
    jsonschema.Draft202012Validator(printed).validate(yaml.safe_load(EXAMPLE.read_text()))
