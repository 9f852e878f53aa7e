"""The base of every configuration section: strict keys, frozen values, docstrings as the
schema's descriptions, and the folding of ``X`` / ``X_file`` / ``X_env`` into one SecretRef.

A section declares a secret as ``X: SecretRef | None = None`` (its docstring describes the
secret). In the file, and in ``model_dump`` and the JSON Schema, the secret stays three flat
keys ``X``, ``X_file`` and ``X_env`` (at most one of them given).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from syncd.config.secrets import SecretRef

SECRET_FORMS = ("inline", "file", "env")
"""The SecretRef fields, in the order of the flat keys X, X_file, X_env."""


def flat_key(name: str, form: str) -> str:
    """The YAML key of one form of the secret ``name`` (``token``, ``file`` -> ``token_file``)."""
    return name if form == "inline" else f"{name}_{form}"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretRef or SecretRef in typing.get_args(annotation)


def fold_secret(values: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``values`` with the keys X, X_file and X_env of secret ``name`` folded into X."""
    keys = [flat_key(name, form) for form in SECRET_FORMS]
    given = [key for key in keys if values.get(key)]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(given)}")
    folded = {key: value for key, value in values.items() if key not in keys}
    if not given:
        folded[name] = None
    elif isinstance(values[given[0]], SecretRef):
        folded[name] = values[given[0]]
    else:
        form = SECRET_FORMS[keys.index(given[0])]
        folded[name] = {"name": name, form: values[given[0]]}
    return folded


class Section(BaseModel):
    """A configuration section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    secret_names: ClassVar[tuple[str, ...]] = ()
    """The fields of this section that are SecretRefs (filled in per subclass)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.secret_names = tuple(
            name for name, field in cls.model_fields.items() if _is_secret(field.annotation)
        )

    @model_validator(mode="before")
    @classmethod
    def _fold_secrets(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            for name in cls.secret_names:
                values = fold_secret(values, name)
        return values

    @model_serializer(mode="wrap")
    def _flat_secrets(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        if not self.secret_names or not isinstance(data, dict):
            return data
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key not in self.secret_names:
                flat[key] = value
                continue
            for form in SECRET_FORMS:
                item = value.get(form) if isinstance(value, dict) else None
                if item is not None or not info.exclude_none:
                    flat[flat_key(key, form)] = item
        return flat

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if not cls.secret_names:
            return schema
        target = handler.resolve_ref_schema(schema)
        properties: dict[str, Any] = {}
        for key, value in target.get("properties", {}).items():
            if key not in cls.secret_names:
                properties[key] = value
                continue
            what = value.get("description", key)
            properties.update(secret_properties(key, what))
        target["properties"] = properties
        return schema


def secret_properties(name: str, description: str) -> dict[str, Any]:
    """The JSON Schema of the three flat keys of the secret ``name``."""
    nullable_string = [{"type": "string"}, {"type": "null"}]
    return {
        name: {
            "anyOf": nullable_string,
            "writeOnly": True,
            "description": f"{description} Inline (prefer {name}_file or {name}_env); "
            f"at most one of {name}, {name}_file, {name}_env.",
        },
        f"{name}_file": {
            "anyOf": nullable_string,
            "description": f"A file holding {name} (mode 0600), relative to this file's folder.",
        },
        f"{name}_env": {
            "anyOf": nullable_string,
            "description": f"The environment variable holding {name}.",
        },
    }
