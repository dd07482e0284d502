"""Keras 3 sources (``.keras`` and legacy ``.h5``): load in safe mode, summarize, run, export.

Safe mode stays on unless the user passes ``--unsafe-deserialization``: a Lambda layer holds Python bytecode,
and loading it would run code from the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import ModelFormatError, UnsafeModelError
from edgeexport.quiet import captured_output
from edgeexport.sources.base import LoadedModel
from edgeexport.sources.tfgraph import (
    count_function_macs,
    fixed_signature,
    quiet_tensorflow,
)
from edgeexport.types import ExportedGraph, ModelSummary, PruneReport, SourceModel, TensorSpec

_UNSAFE_MARKERS = ("safe_mode", "arbitrary code")


def load(source: SourceModel) -> KerasModel:
    """Open a ``.keras`` or ``.h5`` file with Keras in safe mode (unless the source options turn it off)."""
    quiet_tensorflow()
    import keras

    from edgeexport.plugins import custom_class_hint, import_modules

    import_modules(source.options.imports)  # custom layers register themselves; safe mode stays as it is
    try:
        with captured_output():
            model = keras.saving.load_model(
                str(source.path), compile=False, safe_mode=not source.options.unsafe_deserialization
            )
    except ValueError as err:
        text = str(err)
        if any(marker in text for marker in _UNSAFE_MARKERS):
            raise UnsafeModelError(
                f"{source.path.name} contains a Lambda layer (Python code); Keras safe mode refused to load it",
                hint="if you trust this file, pass --unsafe-deserialization to load it knowingly",
            ) from err
        raise ModelFormatError(f"cannot read {source.path.name} as a Keras model: {_first_line(text)}",
                               hint=custom_class_hint(text)) from err
    except Exception as err:
        raise ModelFormatError(f"cannot read {source.path.name} as a Keras model: {_first_line(str(err))}",
                               hint=custom_class_hint(str(err))) from err
    if not isinstance(model, keras.Model):
        raise ModelFormatError(f"{source.path.name} holds a {type(model).__name__}, not a Keras model")
    return KerasModel(source, model, reloadable=True)


# Gate matrices per recurrent cell: each multiplies the step's input and the previous state.
_GATES = {"LSTMCell": 4, "GRUCell": 3, "SimpleRNNCell": 1}


def recurrent_macs(model: Any) -> int:
    """MACs of the model's LSTM/GRU/SimpleRNN layers that run as loops (``unroll=False``), from their
    configs: per step and direction, gates x units x (input features + units). Unrolled layers are already
    in the TensorFlow graph and are not added again."""
    total = 0
    for layer in _walk(model):
        cells = [getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)]
        rnns = [c for c in cells if c is not None] or [layer]
        for rnn in rnns:
            cell = getattr(rnn, "cell", None)
            gates = _GATES.get(type(cell).__name__, 0) if cell is not None else 0
            if not gates or getattr(rnn, "unroll", False):
                continue
            shape = _input_shape(layer)
            if len(shape) != 3 or shape[1] is None or shape[2] is None:
                continue
            units = int(getattr(cell, "units", 0))
            total += int(shape[1]) * gates * units * (int(shape[2]) + units)
    return total


def _input_shape(layer: Any) -> tuple[int | None, ...]:
    try:
        tensor = layer.input
    except (AttributeError, ValueError):  # a layer never called has no input
        return ()
    if isinstance(tensor, list | tuple):
        tensor = tensor[0] if tensor else None
    return tuple(tensor.shape) if tensor is not None and hasattr(tensor, "shape") else ()


def _walk(layer: Any) -> list[Any]:
    found = []
    for child in getattr(layer, "layers", ()):
        found.append(child)
        if getattr(child, "layers", None) and not hasattr(child, "cell"):
            found.extend(_walk(child))
    return found


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line[:300]


class KerasModel(LoadedModel):
    """A Keras model with the names edgeexport uses for its inputs (input layer names) and outputs
    (the names of the layers that produce them)."""

    def __init__(self, source: SourceModel, model: Any, *, notes: tuple[str, ...] = (),
                 reloadable: bool = False) -> None:
        self.source = source
        self._model: Any = model
        self.notes = notes
        self.input_names = tuple(_tensor_layer_name(t) for t in model.inputs)
        self.output_names = _unique(tuple(_tensor_layer_name(t) for t in model.outputs))
        self._reloadable = reloadable  # opened from its file as it is (not pruned or rebuilt in memory)
        self.reloads = 0

    @property
    def model(self) -> Any:
        """The Keras model; opened again from its file (same safe mode and imports) after ``release``."""
        if self._model is None:
            from edgeexport.files import sha256_of

            # the reference must be the model that was converted: a file replaced meanwhile is refused
            if sha256_of(self.source.path) != self.source.sha256:
                raise ModelFormatError(f"{self.source.path.name} changed while it was being converted",
                                       hint="convert again once the file is no longer being written")
            self._model = load(self.source)._model
            self.reloads += 1
        return self._model

    def release(self) -> bool:
        if not self._reloadable or self._model is None:
            return False
        self._model = None
        return True

    def keras_model(self) -> Any:
        return self.model

    @cached_property
    def _activations(self) -> int | None:
        total = 0
        for layer in _walk(self.model):
            try:
                outputs = layer.output
            except (AttributeError, ValueError):  # a layer used twice has no single output
                return None
            for tensor in outputs if isinstance(outputs, list | tuple) else [outputs]:
                dims = tuple(tensor.shape)[1:]
                if any(d is None for d in dims):
                    return None
                total += int(np.prod(dims, dtype=np.int64)) * np.dtype(str(tensor.dtype)).itemsize
        return total

    def activation_bytes(self) -> int | None:
        """Summed from the layers' symbolic output shapes (ResNet152V2 at 299x299: 530 MiB, as measured)."""
        return self._activations

    @cached_property
    def summary(self) -> ModelSummary:
        ops = Counter(type(layer).__name__ for layer in self.model.layers if type(layer).__name__ != "InputLayer")
        concrete = self._concrete_function()  # profiled as traced: no frozen copy of the weights (issue 17)
        return ModelSummary(
            inputs=self._input_specs(),
            outputs=tuple(
                TensorSpec(name=name, shape=(None, *tuple(t.shape)[1:]), dtype=str(t.dtype))
                for name, t in zip(self.output_names, self.model.outputs)
            ),
            ops=tuple(sorted(ops.items())),
            params=int(self.model.count_params()),
            macs=self._macs(concrete),
        )

    def _macs(self, concrete: Any) -> int:
        """The profiler's count plus the recurrent layers it cannot see inside their While loops."""
        macs, notes = count_function_macs(concrete)
        extra = recurrent_macs(self.model)
        if extra and macs:
            notes = tuple(n for n in notes if "While loop" not in n)
            macs += extra
        self.notes = tuple(dict.fromkeys(self.notes + notes))
        return macs

    def _input_specs(self) -> tuple[TensorSpec, ...]:
        from edgeexport.sources.shapes import apply_input_shapes

        declared = {name: tuple(tensor.shape) for name, tensor in zip(self.input_names, self.model.inputs)}
        shapes = apply_input_shapes(declared, self.source.options, self.source.path.name)
        specs = []
        for name, tensor in zip(self.input_names, self.model.inputs):
            shape = shapes[name]
            specs.append(
                TensorSpec(name=name, shape=shape, dtype=str(tensor.dtype), layout=_layout(shape),
                           value_range=self._value_range(tensor))
            )
        return tuple(specs)

    def _value_range(self, tensor: Any) -> tuple[float, float] | None:
        """Token ids must stay inside the vocabulary of the Embedding layer that reads them."""
        import keras

        for layer in self.model.layers:
            if isinstance(layer, keras.layers.Embedding):
                for node in layer._inbound_nodes:
                    if any(t is tensor for t in node.input_tensors):
                        return (0.0, float(layer.input_dim - 1))
        return None

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        arrays = self.check_feeds(feeds)
        ordered = [arrays[name] for name in self.input_names]
        outputs = self.model(ordered if len(ordered) > 1 else ordered[0], training=False)
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        return {name: np.asarray(out) for name, out in zip(self.output_names, outputs)}

    def _signature(self, batch: int = 1) -> list[Any]:
        return fixed_signature(self._input_specs(), batch)

    def _concrete_function(self) -> Any:
        tf = quiet_tensorflow()
        model = self.model
        return tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False)).get_concrete_function(
            *self._signature()
        )

    def export_saved_model(self, directory: Path) -> ExportedGraph:
        tf = quiet_tensorflow()
        import keras

        from edgeexport.sources.keras_compat import prepare_for_export

        model, changes = prepare_for_export(self.model)
        names = self.output_names

        def serve(*xs: Any) -> dict[str, Any]:
            outs = model(list(xs) if len(xs) > 1 else xs[0], training=False)
            outs = outs if isinstance(outs, list | tuple) else [outs]
            return {name: tf.identity(out, name=name) for name, out in zip(names, outs)}

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, input_signature=self._signature())
        with captured_output():
            archive.write_out(str(directory), verbose=False)
        return ExportedGraph(directory, self.input_names, names, tuple(changes) + self.notes)

    def pruned(
        self, pruning: Any, *, finetune_data: Mapping[str, NDArray[Any]] | None = None, finetune_epochs: int = 0
    ) -> tuple[LoadedModel, PruneReport]:
        if pruning.method == "lowrank":
            from edgeexport.compress.keras_lowrank import factorized_keras_source

            return factorized_keras_source(self, pruning, finetune_data=finetune_data, finetune_epochs=finetune_epochs)
        from edgeexport.compress.keras_pruning import prune_keras_model

        model, stats = prune_keras_model(self.model, pruning)
        tuned = None
        if finetune_data is not None and finetune_epochs > 0:
            from edgeexport.compress.finetune import distill

            with captured_output():
                tuned = distill(model, self.model, finetune_data, self.input_names, epochs=finetune_epochs)
        report = PruneReport(
            method=pruning.method,
            target_sparsity=pruning.sparsity,
            achieved_sparsity=stats.achieved_sparsity,
            params_before=stats.params_before,
            params_after=stats.params_after,
            layers_pruned=len(stats.layers_pruned),
            layers_skipped=tuple(f"{name}: {why}" for name, why in stats.layers_skipped),
            macs_before=stats.macs_before,
            macs_after=stats.macs_after,
            finetune_epochs=tuned.epochs if tuned else 0,
            finetune_samples=tuned.samples if tuned else 0,
            finetune_mse_before=tuned.mse_before if tuned else None,
            finetune_mse_after=tuned.mse_after if tuned else None,
        )
        return KerasModel(self.source, model, notes=self.notes), report


def _tensor_layer_name(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    return str(history.operation.name) if history is not None else str(tensor.name)


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    seen: Counter[str] = Counter()
    result = []
    for name in names:
        seen[name] += 1
        result.append(name if seen[name] == 1 else f"{name}_{seen[name] - 1}")
    return tuple(result)


def _layout(shape: tuple[int | None, ...]) -> str | None:
    # Keras is channels-last by default; only 4-D image tensors have a layout a converter may permute.
    return "NHWC" if len(shape) == 4 else None
