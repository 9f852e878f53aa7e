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
    schema.get("$defs", {}).pop("SecretRef", None)  # shown as the flat keys X, X_file, X_env
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://syncd.invalid/schema/syncd.yaml.json",
        "title": "syncd configuration (syncd.yaml)",
        **{key: value for key, value in schema.items() if key != "title"},
    }
