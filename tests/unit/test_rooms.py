"""Imports run downward between rooms (issue 11): sources never import verify, the simulator's graph module
never imports its readers, and localization asks a LoadedModel for its framework model instead of poking at it."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeexport

PACKAGE = Path(edgeexport.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_sources_do_not_import_verify() -> None:
    offenders = {p.name: sorted(m for m in _imports(p) if m.startswith("edgeexport.verify"))
                 for p in (PACKAGE / "sources").glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_graph_module_does_not_import_its_readers() -> None:
    imported = _imports(PACKAGE / "simulate" / "graph.py")
    assert not {"edgeexport.simulate.tflite_reader", "edgeexport.simulate.coreml_reader"} & imported


def test_localization_does_not_reach_into_sources() -> None:
    text = (PACKAGE / "verify" / "layers.py").read_text(encoding="utf-8")
    assert 'getattr(model, "' not in text and "source.format ==" not in text and "source.format in" not in text
