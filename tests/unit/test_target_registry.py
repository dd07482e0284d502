"""The target registry is the one place that names targets: the rest of edgeexport asks it (issue 11)."""

from __future__ import annotations

import ast
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
from edgeexport.targets.base import (suffix_of, target_info, target_names, target_of_graph_format,
                                     target_of_runtime_path)

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


def _name_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing a value with the registry's TFLITE/COREML constants (``==``, ``!=``, ``is``, ``in`` a
    literal tuple/set/list of them) or keying a dict literal by them."""
    def names(node: ast.expr) -> bool:
        if isinstance(node, ast.Name) and node.id in ("TFLITE", "COREML"):
            return True
        return isinstance(node, (ast.Tuple, ast.Set, ast.List)) and any(names(e) for e in node.elts)

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(names(side) for side in (node.left, *node.comparators)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Dict) and any(k is not None and names(k) for k in node.keys):
            lines.append(node.lineno)
    return lines


def test_no_target_name_comparisons_outside_the_registry_and_targets() -> None:
    hits = [f"{path.relative_to(PACKAGE)}:{number}"
            for path in sorted(PACKAGE.rglob("*.py")) if not str(path.relative_to(PACKAGE)).startswith(ALLOWED)
            for number in _name_comparisons(ast.parse(path.read_text(encoding="utf-8")))]
    assert hits == []


def test_the_comparison_guard_can_fail() -> None:
    src = "a = t == TFLITE\nb = COREML != t\nc = t in (TFLITE, COREML)\nd = {TFLITE: 1}\ne = TFLITE\nf = g(TFLITE)\n"
    assert _name_comparisons(ast.parse(src)) == [1, 2, 3, 4]


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
    assert [n for n in target_names() if target_info(n).has_delegates] == ["tflite"]
    assert all(target_info(n).precision_ladder[-1] == "fp32" for n in target_names())
    assert target_of_runtime_path("coreml-all") == "coreml" and target_of_runtime_path("npu") == "tflite"


def test_coreml_runtime_choices() -> None:
    assert [str(r) for r in CoremlRuntime] == ["auto", "mil", "coreml"]
    assert CoremlRuntime.COREML == Engine.COREML == "coreml" and CoremlRuntime.MIL == Engine.MIL
    assert VerifyOptions().coreml_runtime == "auto"
