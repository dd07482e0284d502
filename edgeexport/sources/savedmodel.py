"""TensorFlow SavedModel directories: the ``serving_default`` signature (or the only one) is the model."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgeexport.errors import ModelFormatError, UnsupportedError
from edgeexport.sources.base import ExportedGraph, LoadedModel, PruneReport
from edgeexport.sources.tfgraph import (
    captured_output,
    count_macs_noted,
    fixed_signature,
    frozen_graph_def,
    op_histogram,
    quiet_tensorflow,
)
from edgeexport.types import ModelSummary, SourceModel, TensorSpec

# A weight this small (a bias-like vector or a tiny projection) saves nothing and costs accuracy.
MIN_PRUNED_WEIGHTS = 64


def load(source: SourceModel) -> SavedModel:
    """Load the SavedModel and pick its serving signature."""
    tf = quiet_tensorflow()
    try:
        with captured_output():
            module = tf.saved_model.load(str(source.path))
    except Exception as err:  # noqa: BLE001 - a SavedModel TF cannot read is bad input
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
        specs = []
        for name in self.input_names:
            tf_spec = self._input_tf_specs[name]
            shape = self.source.options.shape_for(name) or tuple(tf_spec.shape)
            specs.append(TensorSpec(name=name, shape=tuple(shape), dtype=tf_spec.dtype.name,
                                    layout="NHWC" if len(shape) == 4 else None))
        return tuple(specs)

    def _fixed_signature(self) -> list[Any]:
        return fixed_signature(self._input_specs())

    def _fixed_function(self) -> Any:
        tf = quiet_tensorflow()
        names = self.input_names
        function = self.function

        def call(*xs: Any) -> dict[str, Any]:
            return function(**dict(zip(names, xs)))

        return tf.function(call).get_concrete_function(*self._fixed_signature())

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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

        @tf.function(input_signature=self._fixed_signature())
        def serve(*xs: Any) -> dict[str, Any]:
            result = function(**dict(zip(names, xs)))
            return {name: tf.identity(result[name], name=name) for name in outputs}

        wrapper.serve = serve
        with captured_output():
            tf.saved_model.save(wrapper, str(directory), signatures={"serve": serve.get_concrete_function()})
        return ExportedGraph(directory, names, outputs, self.notes)

    def pruned(
        self, pruning: Any, *, finetune_data: Mapping[str, np.ndarray] | None = None, finetune_epochs: int = 0
    ) -> tuple[LoadedModel, PruneReport]:
        """Magnitude pruning of the weight matrices and kernels (variables of rank >= 2 with at least
        ``MIN_PRUNED_WEIGHTS`` elements; biases and norms untouched) of a freshly loaded copy. A SavedModel has no
        trainable graph we could distil, so there is no fine-tuning (a note says so); other methods are exit 4."""
        from edgeexport.compress.pruning import prune_by_magnitude

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

