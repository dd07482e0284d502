"""TensorFlow SavedModel directories: the ``serving_default`` signature (or the only one) is the model."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import ModelFormatError, UnsupportedError
from edgeexport.quiet import captured_output
from edgeexport.sources.base import LoadedModel
from edgeexport.sources.tfgraph import (
    count_macs_noted,
    fixed_signature,
    frozen_graph_def,
    op_histogram,
    quiet_tensorflow,
)
from edgeexport.types import ExportedGraph, ModelSummary, PruneReport, SourceModel, TensorSpec

# A weight this small (a bias-like vector or a tiny projection) saves nothing and costs accuracy.
MIN_PRUNED_WEIGHTS = 64


def load(source: SourceModel) -> SavedModel:
    """Load the SavedModel and pick its serving signature."""
    tf = quiet_tensorflow()
    try:
        with captured_output():
            module = tf.saved_model.load(str(source.path))
    except Exception as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ModelFormatError(f"cannot load SavedModel {source.path}: {first}") from err
    signatures = dict(module.signatures)
    if not signatures:
        raise ModelFormatError(f"SavedModel {source.path} has no signatures to convert")
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    return SavedModel(source, module, signatures[key], key)


class SavedModel(LoadedModel):
    """A loaded SavedModel signature; inputs and outputs are the signature's keyword names (sorted)."""

    def __init__(self, source: SourceModel, module: Any, function: Any, signature_key: str) -> None:
        self.source = source
        self.module = module
        self.function = function
        self.signature_key = signature_key
        kwargs = function.structured_input_signature[1]
        self.input_names = tuple(sorted(kwargs))
        self._input_tf_specs = {name: kwargs[name] for name in self.input_names}
        self.output_names = tuple(sorted(function.structured_outputs))
        self.notes: tuple[str, ...] = ()

    @cached_property
    def summary(self) -> ModelSummary:
        graph_def = frozen_graph_def(self._fixed_function())
        outputs = self.function.structured_outputs
        params = sum(int(np.prod(v.shape)) for v in getattr(self.module, "variables", ()) if v.trainable)
        return ModelSummary(
            inputs=self._input_specs(),
            outputs=tuple(
                TensorSpec(name=name, shape=tuple(outputs[name].shape), dtype=outputs[name].dtype.name)
                for name in self.output_names
            ),
            ops=op_histogram(graph_def),
            params=params,
            macs=self._macs(graph_def),
        )

    def _macs(self, graph_def: Any) -> int:
        macs, notes = count_macs_noted(graph_def)
        self.notes = tuple(dict.fromkeys(self.notes + notes))
        return macs

    def _input_specs(self) -> tuple[TensorSpec, ...]:
        from edgeexport.sources.shapes import apply_input_shapes

        declared = {name: tuple(self._input_tf_specs[name].shape) for name in self.input_names}
        shapes = apply_input_shapes(declared, self.source.options, self.source.path.name)
        specs = []
        for name in self.input_names:
            tf_spec = self._input_tf_specs[name]
            shape = shapes[name]
            specs.append(TensorSpec(name=name, shape=tuple(shape), dtype=tf_spec.dtype.name,
                                    layout="NHWC" if len(shape) == 4 else None,
                                    value_range=self._token_ranges.get(name) if tf_spec.dtype.is_integer else None))
        return tuple(specs)

    @cached_property
    def _token_ranges(self) -> dict[str, tuple[float, float]]:
        """Integer inputs used as indices into a weight table (an embedding lookup, a Gather of a constant) must
        stay inside it: input name -> (0, rows - 1), read from the frozen serving graph."""
        graph_def = frozen_graph_def(self.function)
        nodes = {node.name: node for node in graph_def.node}
        for function in graph_def.library.function:
            nodes.update({node.name: node for node in function.node_def})

        def source(name: str, depth: int = 0) -> str:
            # Through copies and casts, and the SelectV2 with which Keras 3 wraps negative ids.
            node = nodes.get(name.split(":")[0])
            if node is None or depth > 8:
                return ""
            if node.op == "Placeholder":
                return str(node.name)
            if node.op in ("Identity", "Cast", "StopGradient", "SelectV2", "Select"):
                inputs = [i for i in node.input if not i.startswith("^")]
                found = [source(i, depth + 1) for i in (inputs[-1:] if node.op.startswith("Select") else inputs[:1])]
                return next((f for f in found if f), "")
            return ""

        ranges: dict[str, tuple[float, float]] = {}
        for node in nodes.values():
            if node.op not in ("GatherV2", "ResourceGather", "Gather") or len(node.input) < 2:
                continue
            table = nodes.get(node.input[0].split(":")[0])
            while table is not None and table.op == "Identity" and table.input:
                table = nodes.get(table.input[0].split(":")[0])
            placeholder = source(node.input[1])
            if table is None or table.op != "Const" or not placeholder:
                continue
            dims = table.attr["value"].tensor.tensor_shape.dim
            if dims and placeholder in self.input_names:
                ranges[placeholder] = (0.0, float(dims[0].size - 1))
        return ranges

    def _fixed_signature(self) -> list[Any]:
        return fixed_signature(self._input_specs())

    def serving_function(self) -> Any:
        return self._fixed_function()

    def _fixed_function(self) -> Any:
        tf = quiet_tensorflow()
        names = self.input_names
        function = self.function

        def call(*xs: Any) -> dict[str, Any]:
            outputs: dict[str, Any] = function(**dict(zip(names, xs)))
            return outputs

        return tf.function(call).get_concrete_function(*self._fixed_signature())

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        tf = quiet_tensorflow()
        arrays = self.check_feeds(feeds)
        outputs = self.function(**{name: tf.constant(arrays[name]) for name in self.input_names})
        return {name: np.asarray(outputs[name]) for name in self.output_names}

    def export_saved_model(self, directory: Path) -> ExportedGraph:
        tf = quiet_tensorflow()
        names = self.input_names
        outputs = self.output_names
        function = self.function

        class Wrapper(tf.Module):  # type: ignore[misc, name-defined]
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

        wrapper = Wrapper(self.module)

        @tf.function(input_signature=self._fixed_signature())  # type: ignore[untyped-decorator]  # TensorFlow is untyped
        def serve(*xs: Any) -> dict[str, Any]:
            result = function(**dict(zip(names, xs)))
            return {name: tf.identity(result[name], name=name) for name in outputs}

        wrapper.serve = serve
        with captured_output():
            tf.saved_model.save(wrapper, str(directory), signatures={"serve": serve.get_concrete_function()})
        return ExportedGraph(directory, names, outputs, self.notes)

    def pruned(
        self, pruning: Any, *, finetune_data: Mapping[str, NDArray[Any]] | None = None, finetune_epochs: int = 0
    ) -> tuple[LoadedModel, PruneReport]:
        """Magnitude pruning of the weight matrices and kernels (variables of rank >= 2 with at least
        ``MIN_PRUNED_WEIGHTS`` elements; biases and norms untouched) of a freshly loaded copy. A SavedModel has no
        trainable graph we could distil, so there is no fine-tuning (a note says so); other methods are exit 4."""
        from edgeexport.compress.pruning import prune_by_magnitude

        if pruning.method == "lowrank":
            raise UnsupportedError(
                "low-rank factorization is not supported for SavedModel sources: replacing a weight by two smaller "
                "ones means rewriting the traced TensorFlow functions, which a SavedModel does not let us edit",
                hint="convert from the Keras or ONNX model, or use a prune-* / quantization preset")
        if pruning.method != "magnitude":
            raise UnsupportedError(f"{pruning.method} pruning is not supported for SavedModel sources",
                                   hint="use prune-50 or prune-75, or convert from the Keras model")
        copy = load(self.source)
        kernels = [v for v in copy.module.variables
                   if len(v.shape) >= 2 and int(np.prod(v.shape)) >= MIN_PRUNED_WEIGHTS and v.dtype.is_floating]
        arrays = [v.numpy() for v in kernels]
        pruned, achieved = prune_by_magnitude(arrays, pruning.sparsity)
        for variable, array in zip(kernels, pruned):
            variable.assign(array)
        params = self.summary.params
        copy.notes = ("SavedModel pruning is magnitude-only and not fine-tuned: check accuracy on real data",)
        return copy, PruneReport(
            method=pruning.method,
            target_sparsity=pruning.sparsity,
            achieved_sparsity=achieved,
            params_before=params,
            params_after=params,
            layers_pruned=len(kernels),
        )

