"""Checks on an ONNX file before anything converts it: safe external data, a supported opset, convertible ops
and fully resolvable input shapes.

Each check raises the error class the CLI maps to an exit code: BadInputError (3) for an unsafe or broken file or
an unresolvable shape, UnsupportedError / UnsupportedOpError (4) for what the converter cannot handle. ``onnx`` is
imported inside functions only.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeexport.errors import (
    BadInputError,
    ModelFormatError,
    UnsupportedError,
    UnsupportedOpError,
)
from edgeexport.types import LoadOptions

# ONNX Runtime executes opset 7 and newer; older graphs use attribute forms (Reshape, Slice, Upsample) that
# onnx2tf's per-op modules do not read. The upper bound is what the installed onnx package defines (25 for
# onnx 1.20): neither the checker nor onnx2tf knows the semantics of a newer opset.
MIN_OPSET = 7
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
# onnx2tf modules that are not ONNX operators of the default domain.
_NOT_OPS = frozenset({"Input", "__init__", "FusedConv", "GroupNorm"})


def max_opset() -> int:
    """The newest default-domain opset the installed onnx package defines."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


@functools.lru_cache(maxsize=1)
def convertible_ops() -> frozenset[str]:
    """Default-domain op types onnx2tf can convert: it ships one module per op in ``onnx2tf/ops/``.

    Read from the installed package's directory, without importing onnx2tf (which imports TensorFlow)."""
    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    ops_dir = Path(next(iter(spec.submodule_search_locations))) / "ops"
    return frozenset(p.stem for p in ops_dir.glob("*.py") if p.stem not in _NOT_OPS)


def iter_graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph held in node attributes (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from iter_graphs(attr.g)
            for sub in attr.graphs:
                yield from iter_graphs(sub)


def iter_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of the model that could hold weights: initializers and Constant/attribute tensors."""
    for graph in iter_graphs(model.graph):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def external_locations(model: Any) -> dict[str, int]:
    """Side-file locations named by tensors stored as external data, with how many tensors use each."""
    import onnx

    found: Counter[str] = Counter()
    for tensor in iter_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            found[entries.get("location", "")] += 1
    return dict(found)


def check_external_data(model: Any, model_path: Path) -> list[Path]:
    """Refuse external-data locations that leave the model's directory, before a byte of them is read.

    Absolute paths, ``..`` components and symlinks (or symlinked directories) resolving outside the directory
    are BadInputError (exit 3), as is a side file that does not exist. Returns the resolved side files."""
    base = model_path.resolve().parent
    files = []
    for location, count in sorted(external_locations(model).items()):
        what = f"external data location '{location}' ({count} tensor{'s' if count > 1 else ''})"
        if not location:
            raise ModelFormatError(f"{model_path.name}: a tensor is stored as external data without a location")
        if os.path.isabs(location) or Path(location).is_absolute() or location.startswith(("/", "\\")):
            raise BadInputError(f"{model_path.name}: {what} is an absolute path; refusing to read outside {base}",
                                hint="external data must sit next to the .onnx file")
        if ".." in Path(location.replace("\\", "/")).parts:
            raise BadInputError(f"{model_path.name}: {what} points outside the model's directory; refusing to read it",
                                hint="external data must sit next to the .onnx file")
        target = (base / location).resolve()
        if not target.is_relative_to(base):
            raise BadInputError(
                f"{model_path.name}: {what} resolves to {target}, outside the model's directory (a symlink?); "
                "refusing to read it",
                hint="external data must sit next to the .onnx file",
            )
        if not target.is_file():
            raise BadInputError(f"{model_path.name}: external data file '{location}' is missing (expected at {target})",
                                hint="copy the side file(s) next to the .onnx file")
        files.append(target)
    return files


def check_opset(model: Any, name: str) -> int:
    """The model's default-domain opset; UnsupportedError (exit 4) when it is outside what we can convert."""
    if not model.opset_import:
        # opset_import is serialized after the graph: a file cut off at the end loses it first
        raise ModelFormatError(f"{name} declares no opset at all (corrupt or truncated?)")
    versions = {imp.domain: int(imp.version) for imp in model.opset_import}
    opset = next((versions[d] for d in DEFAULT_DOMAINS if d in versions), None)
    if opset is None:
        raise UnsupportedError(f"{name} imports no default ONNX opset (ai.onnx)",
                               hint=f"export it with an opset between {MIN_OPSET} and {max_opset()}")
    if opset < MIN_OPSET or opset > max_opset():
        raise UnsupportedError(
            f"{name} uses ONNX opset {opset}; edgeexport converts opsets {MIN_OPSET} to {max_opset()}",
            hint="re-export the model with a supported opset (e.g. torch.onnx.export(..., opset_version=17))",
        )
    return opset


def op_histogram(model: Any) -> Counter[str]:
    """Op type -> count over the graph and its subgraphs; ops of other domains are named ``domain::Op``."""
    counts: Counter[str] = Counter()
    for graph in iter_graphs(model.graph):
        for node in graph.node:
            counts[node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"] += 1
    return counts


def check_ops(model: Any, name: str) -> None:
    """UnsupportedOpError (exit 4) listing every op onnx2tf has no converter for, and every custom-domain op."""
    supported = convertible_ops()
    local_functions = {(f.domain, f.name) for f in model.functions}
    missing: Counter[str] = Counter()
    for graph in iter_graphs(model.graph):
        for node in graph.node:
            if node.domain in DEFAULT_DOMAINS:
                if node.op_type not in supported:
                    missing[node.op_type] += 1
            elif (node.domain, node.op_type) not in local_functions:
                missing[f"{node.domain}::{node.op_type}"] += 1
    if missing:
        raise UnsupportedOpError(
            dict(missing), where=f"{name} (no ONNX -> TensorFlow converter for them)",
            hint="ops outside the default ONNX domain and ops onnx2tf lacks cannot be converted; "
                 "re-export with standard ops",
        )


def graph_inputs(model: Any) -> list[Any]:
    """The graph's real inputs (models with IR version < 4 also list their initializers as inputs)."""
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def declared_shape(value: Any) -> tuple[int | None, ...]:
    """A ValueInfo's shape with ``None`` for symbolic or unknown dimensions."""
    dims = value.type.tensor_type.shape.dim
    return tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)


def resolved_shapes(model: Any, options: LoadOptions) -> dict[str, tuple[int | None, ...]]:
    """Input shapes after ``--input-shape`` overrides, with a dynamic batch (axis 0) kept as ``None``.

    An override naming no input, of the wrong rank, or contradicting a fixed dimension is BadInputError."""
    from edgeexport.sources.shapes import apply_input_shapes

    declared = {value.name: declared_shape(value) for value in graph_inputs(model)}
    return apply_input_shapes(declared, options, "the model")


def fixed_shapes(model: Any, options: LoadOptions) -> dict[str, tuple[int, ...]]:
    """Input shapes for export: batch 1 where it was dynamic; BadInputError names an input with another
    dynamic dimension and says which ``--input-shape`` fixes it."""
    fixed: dict[str, tuple[int, ...]] = {}
    for name, shape in resolved_shapes(model, options).items():
        if any(d is None for d in shape[1:]):
            example = ",".join("1" if d is None else str(d) for d in shape)
            raise BadInputError(f"input '{name}' has a dynamic dimension {_dims(shape)} that cannot be guessed",
                                hint=f"fix it with --input-shape {name}={example} (your real size in place of 1)")
        fixed[name] = tuple(1 if d is None else d for d in shape)
    return fixed


def _dims(shape: tuple[int | None, ...]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)
