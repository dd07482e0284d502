"""The JSON Schemas we publish (``edgeexport/schemas/*.json``) and validation against them with jsonschema.

The reference implementation validates, so every keyword of draft 2020-12 means what the standard says; a
schema that is itself invalid fails loudly (``SchemaError``) instead of passing everything.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

MANIFEST_SCHEMA = "manifest.schema.json"
REPORT_SCHEMA = "report.schema.json"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@cache
def load_schema(name: str = MANIFEST_SCHEMA) -> dict[str, Any]:
    """A schema shipped in ``edgeexport/schemas`` by file name (default: the manifest schema)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return schema


def validate(instance: Any, name: str = MANIFEST_SCHEMA, *, definition: str | None = None) -> list[str]:
    """Every way ``instance`` breaks schema ``name`` (or its ``$defs/<definition>``), one line each, in document
    order: ``"inputs/0/dtype: 'float8' is not one of [...]"``. Empty when it is valid."""
    import jsonschema

    root = load_schema(name)
    schema = root if definition is None else {"$ref": f"#/$defs/{definition}", "$defs": root["$defs"]}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in errors]


def check_schema(name: str) -> None:
    """Raise ``jsonschema.SchemaError`` when schema ``name`` is not a valid draft 2020-12 schema."""
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(load_schema(name))
