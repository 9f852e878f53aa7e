"""The configuration's JSON Schema, made from the models (field docstrings as descriptions).

``syncd config schema`` prints it; the syncd.yaml(5) man page is generated from it.
"""

from __future__ import annotations

from typing import Any

from syncd.config.model import Config

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the configuration file, as a dict ready for JSON."""
    schema = Config.model_json_schema(mode="validation")
    definitions = schema.get("$defs", {})
    definitions.pop("SecretRef", None)  # shown as the flat keys X, X_file, X_env
    schema["properties"] = {
        name: _nullable(prop, definitions) for name, prop in schema["properties"].items()
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://syncd.invalid/schema/syncd.yaml.json",
        "title": "syncd configuration (syncd.yaml)",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _nullable(prop: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """A top-level section that may also be null (only comments under it: its defaults)."""
    outer = {key: value for key, value in prop.items() if key in ("default", "description")}
    inner = {key: value for key, value in prop.items() if key not in outer and key != "title"}
    if "description" not in outer and "$ref" in inner:
        outer["description"] = definitions[inner["$ref"].rsplit("/", 1)[1]]["description"]
    return {**outer, "anyOf": [inner, {"type": "null"}]}
