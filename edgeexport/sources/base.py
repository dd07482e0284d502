"""The loaded-model contract every source format implements.

A ``LoadedModel`` is the source model opened by its own framework. It offers three things the other stages
need: a summary, a reference runner (``run``) and an export to a fixed-shape TensorFlow SavedModel with a
single ``serve`` endpoint, which is what both converters consume.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import DataError
from edgeexport.runs import rows_per_run
from edgeexport.types import ExportedGraph, ModelSummary, PruneReport, SourceModel, TensorSpec

if TYPE_CHECKING:
    import keras
    import onnx
    import tensorflow as tf


class LoadedModel(ABC):
    """A source model opened by its framework. Subclasses live in the format modules."""

    source: SourceModel

    @property
    @abstractmethod
    def summary(self) -> ModelSummary:
        """Inputs, outputs, op histogram, parameters and MACs."""

    @abstractmethod
    def run(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Run the reference model on a batch; feeds and results are keyed by tensor name."""

    @abstractmethod
    def export_saved_model(self, directory: Path) -> ExportedGraph:
        """Write a fixed-shape SavedModel (batch 1) with one ``serve`` endpoint into ``directory``."""

    def pruned(
        self, pruning: Any, *, finetune_data: Mapping[str, NDArray[Any]] | None = None, finetune_epochs: int = 0
    ) -> tuple[LoadedModel, PruneReport]:
        """Return a copy of this model with ``pruning`` (an ``edgeexport.catalog.model.Pruning``) applied, then
        fine-tuned by distillation on ``finetune_data`` for ``finetune_epochs`` epochs when both are given."""
        from edgeexport.errors import UnsupportedError

        raise UnsupportedError(
            f"pruning is not supported for {self.source.format} sources yet",
            hint="convert without a prune-* preset, or start from the Keras model",
        )

    def release(self) -> bool:
        """Drop the framework's model (weights, graphs) while other processes work, e.g. the converter child;
        the next use opens the file again. True when something was dropped; False for a source that cannot be
        reopened as it is (a model pruned or rebuilt in memory) or that keeps nothing large (the default).
        The caller collects the memory (``release.release_memory``)."""
        return False

    def activation_bytes(self) -> int | None:
        """Bytes of every layer output for one sample (the reference's working memory per sample in a call: an
        eager Keras call keeps all of them until it returns); None when the source cannot tell."""
        return None

    # What per-layer localization (verify.layers) opens: the framework's own model, by kind. A source answers
    # the one question that fits it; None from all three means its layers cannot be compared.
    def keras_model(self) -> keras.Model | None:
        """The Keras model itself (None: not a Keras source)."""
        return None

    def onnx_model(self) -> onnx.ModelProto | None:
        """The ONNX model proto, external data loaded (None: not an ONNX source)."""
        return None

    def serving_function(self) -> tf.types.experimental.ConcreteFunction | None:
        """The fixed-shape (batch 1) serving concrete function of a SavedModel (None: not a SavedModel)."""
        return None

    def onnx_graph(self) -> onnx.ModelProto | None:
        """The ONNX graph a TFLite conversion goes through, which ``targets.onnx_limits`` checks before any
        converter runs: an ONNX source's own model; a ``.pt2``'s ``torch.onnx.export`` graph once exported
        (None before); None for a source that is not converted through ONNX."""
        return self.onnx_model()

    def check_feeds(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Validate user data against the inputs: names, trailing shape, finite values; cast to the input dtype."""
        return check_feeds(self.summary.inputs, feeds)


def check_feeds(specs: tuple[TensorSpec, ...], feeds: Mapping[str, NDArray[Any]], *, what: str = "data") -> dict[str, NDArray[Any]]:
    """Match ``feeds`` to ``specs`` (a single unnamed array is accepted for a single-input model).

    Raises DataError (exit 3) naming the input for a missing input, a wrong rank or shape, a dtype that cannot
    be cast safely, or NaN/inf values.
    """
    arrays = dict(feeds)
    if len(specs) == 1 and len(arrays) == 1 and specs[0].name not in arrays:
        arrays = {specs[0].name: next(iter(arrays.values()))}
    checked: dict[str, NDArray[Any]] = {}
    runs: int | None = None
    for spec in specs:
        if spec.name not in arrays:
            raise DataError(f"{what} has no array for input '{spec.name}'", hint=f"arrays found: {', '.join(sorted(arrays)) or 'none'}")
        array = np.asarray(arrays[spec.name])
        given = array.shape  # the user's shape, for messages: not the one with a sample axis added below
        expected = spec.shape[1:]
        unit = rows_per_run(spec.shape)
        if not spec.shape:
            # a scalar input: one value per run, the data set holds them on a 1-D sample axis
            if array.ndim > 1:
                raise DataError(f"{what} for input '{spec.name}' has shape {array.shape}, expected one value per sample "
                                "(the input is a scalar)")
            array = array.reshape(-1)
        elif array.ndim == len(spec.shape) - 1 and unit in (None, 1):
            array = array[None]
        if spec.shape and (array.ndim != len(spec.shape) or any(e is not None and e != a for e, a in zip(expected, array.shape[1:]))):
            lead = "N" if unit is None else ("N" if unit == 1 else f"N*{unit}")
            dims = "x".join([lead, *("?" if d is None else str(d) for d in expected)])
            channel = (len(given) == len(spec.shape) - 1 and expected[-1:] == (1,)
                       and all(e is None or e == a for e, a in zip(expected[:-1], given[1:])))
            raise DataError(f"{what} for input '{spec.name}' has shape {given}, expected {dims}",
                            hint="add the channel axis: x[..., None]" if channel else None)
        if unit and unit > 1 and len(array) % unit:
            raise DataError(f"{what} for input '{spec.name}' has {len(array)} rows; the model takes {unit} per run "
                            f"(fixed shape {spec.describe()}), so the rows must be a multiple of {unit}")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise DataError(f"{what} for input '{spec.name}' contains NaN or infinite values")
        target = np.dtype(spec.dtype)
        if target.kind in "iu" and array.dtype.kind == "f":
            raise DataError(f"{what} for input '{spec.name}' is {array.dtype}, but the model takes {spec.dtype} (token ids?)")
        if target.kind == "f" and array.dtype.kind not in "fiub":
            raise DataError(f"{what} for input '{spec.name}' has dtype {array.dtype}, expected {spec.dtype}")
        count = len(array) // (unit or 1) if unit else len(array)
        if runs is not None and count != runs:
            raise DataError(f"{what} inputs have different sample counts ({runs} vs {count} for '{spec.name}')")
        runs = count
        checked[spec.name] = array.astype(target, copy=False)
    return checked


def endpoint_arrays(arrays: Mapping[str, NDArray[Any]], exported: ExportedGraph) -> dict[str, NDArray[Any]]:
    """Source-model arrays (leading sample axis, source input order) renamed and permuted to the export's endpoint
    inputs, e.g. ONNX NCHW calibration images for an NHWC endpoint. The sample axis is axis 0 of both."""
    axes = {p.tensor: p.axes for p in exported.permutations if p.kind == "input"}
    return {
        endpoint: np.ascontiguousarray(np.transpose(array, axes[name])) if name in axes else array
        for (name, array), endpoint in zip(arrays.items(), exported.input_names)
    }
