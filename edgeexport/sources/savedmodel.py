"""TensorFlow SavedModel directories: the ``serving_default`` signature (or the only one) is the model."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgeexport.errors import ModelFormatError
from edgeexport.sources.base import ExportedGraph, LoadedModel
from edgeexport.sources.tfgraph import (
    captured_output,
    count_macs,
    fixed_signature,
    frozen_graph_def,
    op_histogram,
    quiet_tensorflow,
)
from edgeexport.types import ModelSummary, SourceModel, TensorSpec


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
            macs=count_macs(graph_def),
        )

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
        return ExportedGraph(directory, names, outputs)
