"""PyTorch sources: an ExportedProgram saved with ``torch.export.save`` (``.pt2``), run by PyTorch itself.

The reference runner is the ExportedProgram (``program.module()``), so verification compares against PyTorch.
Routes to the targets (the report's notes say which was taken):

* Core ML: coremltools' ExportedProgram frontend (``ct.convert(program)``), carried to the Core ML target in
  ``ExportedGraph.program``.
* TFLite: ``torch.onnx.export(program, dynamo=True)`` then the ONNX source's path (onnx2tf). litert-torch, Google's
  PyTorch -> LiteRT converter, does not resolve next to our pins (it needs ai-edge-litert >= 2.3; onnx2tf's set
  pins 2.1.2), so it is not used.

Both artifacts keep PyTorch's layout (NCHW images): a PyTorch app feeds what the model was written for, so the ONNX
path runs with ``keep_layout`` and no permutation is recorded. torch is an optional extra
(``pip install 'edgeexport[torch]'``), imported inside functions only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import BadInputError, ConversionError, ModelFormatError, UnsupportedError
from edgeexport.runs import is_fixed, join_runs, split_runs
from edgeexport.sources.base import LoadedModel
from edgeexport.types import ExportedGraph, ModelSummary, SourceModel, TensorSpec

EXTRA = "pip install 'edgeexport[torch]'"
ONNX_OPSET = 18  # torch.onnx's dynamo exporter targets opset 18 and newer
TFLITE_ROUTE = "tflite route: torch.onnx.export (dynamo, opset 18) -> onnx2tf -> TFLite converter"
COREML_ROUTE = "coreml route: coremltools' ExportedProgram frontend"
NO_LITERT_TORCH = ("litert-torch not used: it requires ai-edge-litert >= 2.3 and edgeexport pins 2.1.2 "
                   "(onnx2tf's toolchain)")


def import_torch() -> Any:
    """Import torch, or BadInputError (exit 3) naming the extra that installs it."""
    try:
        import torch
    except ImportError as err:
        raise BadInputError("reading a PyTorch .pt2 model needs PyTorch, which is not installed",
                            hint=f"install the extra: {EXTRA}") from err
    return torch


def load(source: SourceModel) -> PyTorchModel:
    """Read ``source`` (a ``torch.export.save`` archive) into an ExportedProgram."""
    torch = import_torch()
    try:
        program = torch.export.load(str(source.path))
    except Exception as err:
        raise ModelFormatError(f"cannot read {source.path.name} as a torch.export program: {_first(err)}") from err
    return PyTorchModel(source, program)


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def _np_dtype(torch_dtype: Any) -> str:
    return str(np.dtype(str(torch_dtype).removeprefix("torch.")))


def _shape(value: Any) -> tuple[int | None, ...]:
    return tuple(int(d) if isinstance(d, int) or str(d).isdigit() else None for d in value.shape)


class PyTorchModel(LoadedModel):
    """An ExportedProgram and the names of its tensor inputs and outputs."""

    def __init__(self, source: SourceModel, program: Any) -> None:
        self.source = source
        self.program = program
        self._onnx_export: Any = None  # set by export_saved_model (torch.onnx.export)
        signature = program.graph_signature
        placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        self._input_nodes = [placeholders[name] for name in signature.user_inputs]
        bad = [n.name for n in self._input_nodes if not hasattr(n.meta.get("val"), "shape")]
        if bad:
            raise UnsupportedError(f"{source.path.name} takes non-tensor input(s) {', '.join(bad)}",
                                   hint="export a program whose inputs are all tensors")
        self.input_names = tuple(n.name for n in self._input_nodes)
        output_node = next(n for n in program.graph.nodes if n.op == "output")
        values = output_node.args[0]
        self._output_vals = [getattr(v, "meta", {}).get("val") for v in values]
        if any(not hasattr(v, "shape") for v in self._output_vals):
            raise UnsupportedError(f"{source.path.name} returns non-tensor outputs",
                                   hint="export a program that returns a tensor or a tuple of tensors")
        names = list(signature.user_outputs)
        self.output_names = tuple(name if name not in self.input_names else f"output_{i}" for i, name in enumerate(names))

    def onnx_graph(self) -> Any:
        """The ``torch.onnx.export`` graph of the TFLite route, once ``export_saved_model`` has run (None before)."""
        return self._onnx_export

    @cached_property
    def summary(self) -> ModelSummary:
        from edgeexport.sources.shapes import apply_input_shapes

        declared = {n.name: _shape(n.meta["val"]) for n in self._input_nodes}
        shapes = apply_input_shapes(declared, self.source.options, self.source.path.name)
        inputs = tuple(TensorSpec(n.name, shapes[n.name], _np_dtype(n.meta["val"].dtype),
                                  layout="NCHW" if len(shapes[n.name]) == 4 else None)
                       for n in self._input_nodes)
        outputs = tuple(TensorSpec(name, _shape(v), _np_dtype(getattr(v, "dtype", "float32")))
                        for name, v in zip(self.output_names, self._output_vals, strict=True))
        ops: Counter[str] = Counter(str(n.target).removeprefix("aten.") for n in self.program.graph.nodes
                                    if n.op == "call_function")
        params = sum(int(t.numel()) for t in self.program.state_dict.values())
        return ModelSummary(inputs, outputs, tuple(sorted(ops.items())), params, self._macs())

    def _macs(self) -> int:
        """Multiply-accumulates of convolutions and matrix products, from the shapes the program records."""
        total = 0
        for node in self.program.graph.nodes:
            target = str(node.target)
            out = node.meta.get("val")
            if node.op != "call_function" or not hasattr(out, "shape"):
                continue
            if "convolution" in target or "conv2d" in target or "conv1d" in target:
                weight = node.args[1].meta.get("val")
                total += int(out.numel()) * int(weight[0].numel())
            elif any(k in target for k in ("aten.linear", "aten.addmm", "aten.mm", "aten.matmul", "aten.bmm")):
                left = node.args[1 if "addmm" in target else 0].meta.get("val")
                total += int(out.numel()) * int(left.shape[-1])
        return total

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Run the ExportedProgram (eval, no grad) once per run of its fixed input shapes."""
        torch = import_torch()
        arrays = self.check_feeds(feeds)
        shapes = [spec.shape for spec in self.summary.inputs]
        module = self._module
        runs = split_runs(shapes, [arrays[n] for n in self.input_names]) if is_fixed(shapes) else \
            iter([[arrays[n] for n in self.input_names]])
        parts = []
        with torch.no_grad():
            for run in runs:
                values = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in run))
                values = values if isinstance(values, list | tuple) else (values,)
                parts.append({name: v.detach().cpu().numpy() for name, v in zip(self.output_names, values, strict=True)})
        return join_runs(parts)

    @cached_property
    def _module(self) -> Any:
        return self.program.module()

    def export_saved_model(self, directory: Path) -> ExportedGraph:
        """Export to ONNX with torch's dynamo exporter, then run the ONNX path (NCHW kept) into ``directory``.
        The ExportedProgram rides along for the Core ML target."""
        from edgeexport.sources.onnx import load as load_onnx

        torch = import_torch()
        missing = [s.name for s in self.summary.inputs if any(d is None for d in s.shape)]
        if missing:
            raise BadInputError(f"input(s) {', '.join(missing)} of {self.source.path.name} have dynamic dimensions",
                                hint="export the program with static shapes (torch.export.export without dynamic_shapes)")
        onnx_path = directory.parent / f"{directory.name}-torch.onnx"
        examples = tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in self.summary.inputs)
        from edgeexport.quiet import captured_output

        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" per export
        try:
            with captured_output():
                program = torch.onnx.export(self.program, examples, dynamo=True, opset_version=ONNX_OPSET,
                                            input_names=list(self.input_names), output_names=list(self.output_names),
                                            optimize=True, verbose=False)
                program.save(str(onnx_path))
        except Exception as err:
            raise ConversionError(f"torch.onnx.export (dynamo) failed for {self.source.path.name}: {_first(err)}") from err
        onnx_source = dataclasses.replace(self.source, path=onnx_path, format="onnx",
                                          options=dataclasses.replace(self.source.options, keep_layout=True))
        onnx_model = load_onnx(onnx_source)
        self._onnx_export = onnx_model.model  # the graph the TFLite route converts (targets.onnx_limits checks it)
        exported = onnx_model.export_saved_model(directory)
        notes = (*exported.notes, TFLITE_ROUTE, COREML_ROUTE, NO_LITERT_TORCH)
        # The .pt2 file, not the loaded program: the Core ML converter runs in a child process, and an
        # ExportedProgram does not survive pickling there (run_decompositions fails on the copy).
        return dataclasses.replace(exported, notes=notes, program=self.source.path)
