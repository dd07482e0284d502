"""The target registry is the one place that names targets: the rest of edgeexport asks it (issue 11)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import edgeexport
from edgeexport.errors import UnsupportedError
from edgeexport.isolate import preload_for
from edgeexport.options import VerifyOptions
from edgeexport.runtimes.names import CoremlRuntime, Engine
from edgeexport.simulate.graph import OpGraph
from edgeexport.targets.base import suffix_of, target_info, target_names, target_of_graph_format

PACKAGE = Path(edgeexport.__file__).parent
# Where a target's name may be spelt out: the registry, the targets themselves and the catalog data.
ALLOWED = ("targets/", "catalog/", "schemas/manifest.schema.json")
LITERAL = re.compile(r'"(tflite|coreml)"')


def test_target_names_are_spelt_only_in_the_registry_targets_and_catalog() -> None:
    hits = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
            for path in sorted(PACKAGE.rglob("*")) if path.suffix in (".py", ".json", ".toml") and path.is_file()
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if LITERAL.search(line) and not str(path.relative_to(PACKAGE)).startswith(ALLOWED)]
    assert hits == []


def test_manifest_schema_enums_are_the_registrys() -> None:
    # The schema is published to the demo apps, so it spells the names out; it must not drift from the registry.
    schema = json.loads((PACKAGE / "schemas" / "manifest.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["target"]["enum"] == list(target_names())
    formats = schema["properties"]["artifact"]["properties"]["format"]["enum"]
    assert formats == [suffix_of(name).lstrip(".") for name in target_names()]


def test_graph_format_and_target_round_trip() -> None:
    for name in target_names():
        info = target_info(name)
        assert target_of_graph_format(info.graph_format) == name
        assert OpGraph(info.graph_format, None, (), (), (), (), 0, 0, 0.0).target == name
    with pytest.raises(UnsupportedError):
        target_of_graph_format("onnx")
    with pytest.raises(UnsupportedError):
        target_info("onnx")


def test_capabilities_come_from_the_registry() -> None:
    preloads = preload_for(target_names())
    assert preloads == tuple(sorted(p for n in target_names() if (p := target_info(n).preload)))
    assert preloads  # Core ML's converter is preloaded; TFLite's is in the base preload
    assert [n for n in target_names() if target_info(n).keeps_loops] == ["tflite"]


def test_coreml_runtime_choices() -> None:
    assert [str(r) for r in CoremlRuntime] == ["auto", "mil", "coreml"]
    assert CoremlRuntime.COREML == Engine.COREML == "coreml" and CoremlRuntime.MIL == Engine.MIL
    assert VerifyOptions().coreml_runtime == "auto"
