"""A validator for the subset of JSON Schema (draft 2020-12) that our published schemas use.

jsonschema is not a dependency, and the manifest schema needs only: ``type`` (a name or a list), ``required``,
``properties``, ``items``, ``enum``, ``additionalProperties`` (a boolean or a schema), ``minimum``, ``pattern``
and local ``$ref`` (``#/$defs/...``). Any other keyword in a schema is refused, so the schema cannot silently
use something this checker ignores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

MANIFEST_SCHEMA = "manifest.schema.json"
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description"}
_KEYWORDS = {"type", "required", "properties", "items", "enum", "additionalProperties", "minimum", "pattern", "$ref"}
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # JSON has one number type; bool is an int subclass in Python and must not pass as a number.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


class SchemaUnsupported(ValueError):
    """The schema uses a keyword this validator does not implement."""


@lru_cache(maxsize=4)
def load_schema(name: str = MANIFEST_SCHEMA) -> dict[str, Any]:
    """A schema shipped in ``edgeexport/schemas`` by file name (default: the manifest schema)."""
    text = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """The sub-schema a local JSON pointer (``#/$defs/tensor``, ``#/properties/inputs/items``) names."""
    if not ref.startswith("#"):
        raise SchemaUnsupported(f"only local $ref is supported, not {ref!r}")
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise SchemaUnsupported(f"$ref {ref!r} does not resolve")
        node = node[part]
    if isinstance(node, Mapping) and "$ref" in node:
        return resolve(root, node["$ref"])
    return node


def validate(instance: Any, schema: Mapping[str, Any] | None = None, *, root: Mapping[str, Any] | None = None) -> list[str]:
    """Every violation of ``schema`` (default: the manifest schema) by ``instance``, as ``path: message`` lines.

    An empty list means valid. ``root`` is the document ``$ref`` pointers resolve against (default: ``schema``).
    """
    schema = load_schema() if schema is None else schema
    errors: list[str] = []
    _check(instance, schema, root if root is not None else schema, "$", errors)
    return errors


def _check(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str, errors: list[str]) -> None:
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise SchemaUnsupported(f"schema keyword(s) {', '.join(sorted(unknown))} at {path} are not supported")
    if "$ref" in schema:
        _check(value, resolve(root, schema["$ref"]), root, path, errors)
        return
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
        if not any(_TYPES[name](value) for name in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_json_type(value)}")
            return
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{path}: {value!r} is less than the minimum {schema['minimum']!r}")
    if "pattern" in schema and isinstance(value, str) and re.search(schema["pattern"], value) is None:
        errors.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, dict):
        _check_object(value, schema, root, path, errors)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], root, f"{path}[{index}]", errors)


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any], path: str,
                  errors: list[str]) -> None:
    for key in schema.get("required", ()):
        if key not in value:
            errors.append(f"{path}: missing required property {key!r}")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            _check(item, properties[key], root, f"{path}.{key}", errors)
        elif extra is False:
            errors.append(f"{path}: property {key!r} is not allowed")
        elif isinstance(extra, Mapping):
            _check(item, extra, root, f"{path}.{key}", errors)


def _same(value: Any, option: Any) -> bool:
    """JSON equality: in Python ``1 == True``, in JSON a boolean never equals a number."""
    if isinstance(value, bool) or isinstance(option, bool):
        return type(value) is type(option) and value == option
    return bool(value == option)


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__
