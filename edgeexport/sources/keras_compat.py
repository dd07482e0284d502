"""Make a Keras 3 model exportable to TFLite and Core ML through one fixed-shape SavedModel.

Both targets are fed the same artifact: a SavedModel holding a single ``serve`` endpoint whose input
signature is fully static (batch 1 by default). Static shapes are what both converters handle best:
the TFLite converter lowers the tensor lists of a recurrent loop to builtin ops only when the batch is
known, and coremltools converts only one concrete function.

Recurrent layers need more than a fixed batch. Measured on this machine (TF 2.21, Keras 3.15,
coremltools 9.0, see benchmarks/RESULTS_arch.md):

* TFLite converts a fixed-batch LSTM/GRU to a ``WHILE`` loop of builtin ops; an unrolled one becomes a
  flat graph of FULLY_CONNECTED/LOGISTIC/TANH ops. Both run without Flex ops.
* coremltools fails on the loop (``IndexError: list index out of range`` in its TF2 frontend) and
  converts the unrolled graph. So Core ML needs unrolled RNNs. For TFLite the unrolled graph runs faster
  and the loop is smaller; ``prepare_for_export`` picks per target (see TFLITE_UNROLL_MAX_STEPS).
* The fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op is emitted only for tf_keras (Keras 2) LSTM layers, whose
  functions carry an ``api_implements="lstm_*"`` attribute; Keras 3 layers carry none. Re-creating that
  attribute around a Keras 3 layer crashed the converter (segfault) through ``ExportArchive`` and was
  rejected (``The weight should be rank of 2``) through ``tf.saved_model.save``, so it is not used.

The TFLite converter does not keep the model's input order (inputs ``a, b`` came out as tensors ``b, a``):
feed a converted model by the signature names ``fixed_input_signature`` gives, never by position.

Heavy imports (keras, tensorflow) stay inside the functions so the CLI starts fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport.errors import BadInputError, ConversionError, UnsupportedError
from edgeexport.targets.base import target_info

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras
    import tensorflow as tf

# Unrolling copies the cell once per time step. Measured with LiteRT on this machine (RESULTS_arch.md):
# unrolled runs 4-6x faster than the WHILE loop at 8 steps, 1.6x at 64 and 1.3x at 256, while the file
# grows 11x at 64 and 45x at 256 steps (LSTM(16)). Past 64 steps TFLite keeps the loop (builtin ops,
# fixed batch). Core ML has no loop path that converts, so it always unrolls.
TFLITE_UNROLL_MAX_STEPS = 64

# SavedModel signature argument names must match this pattern (TensorFlow's own rule).
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]")


def _safe_name(name: str, index: int) -> str:
    cleaned = _INVALID_NAME_CHARS.sub("_", name.split(":")[0]).lstrip("_-/.")
    return cleaned or f"input_{index}"


def _model_inputs(model: keras.Model) -> list[Any]:
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError) as exc:
        raise BadInputError(
            f"model {model.name!r} has no defined inputs",
            hint="build it with keras.Input(shape=...) or call it once on data before exporting",
        ) from exc
    if not inputs:
        raise BadInputError(f"model {model.name!r} has no defined inputs", hint="build it with keras.Input(shape=...)")
    return inputs


def fixed_input_signature(model: keras.Model, batch: int = 1) -> list[tf.TensorSpec]:
    """One ``tf.TensorSpec`` per model input, in ``model.inputs`` order, with the batch dim set to ``batch``.

    Names come from the model's inputs (made safe for a SavedModel signature). Every non-batch dim must be
    known: a ``None`` there raises BadInputError naming the input, because neither converter can produce
    a static graph from it. ``batch`` defaults to 1 and must be >= 1.
    """
    import tensorflow as tf

    if batch < 1:
        raise BadInputError(f"batch must be >= 1, got {batch}")
    specs: list[tf.TensorSpec] = []
    seen: set[str] = set()
    for index, tensor in enumerate(_model_inputs(model)):
        raw_name = str(getattr(tensor, "name", "") or f"input_{index}")
        shape = tuple(tensor.shape)
        unknown = [axis for axis, dim in enumerate(shape) if axis > 0 and dim is None]
        if unknown:
            shown = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
            raise BadInputError(
                f"input {raw_name!r} has shape {shown} with unknown dimension(s) at axis {unknown}",
                hint="export needs fixed shapes: rebuild the model with keras.Input(shape=...) giving every size",
            )
        name = _safe_name(raw_name, index)
        while name in seen:
            name = f"{name}_{index}"
        seen.add(name)
        specs.append(tf.TensorSpec((batch, *shape[1:]), tf.as_dtype(str(tensor.dtype)), name=name))
    return specs


def _walk_layers(layer: Any) -> Iterator[Any]:
    """Every layer under ``layer`` (nested models and wrappers included), depth first."""
    for child in getattr(layer, "layers", []) or []:
        yield child
        yield from _walk_layers(child)


def _rnn_steps(layer: Any) -> int | None:
    """Time steps a built RNN/Bidirectional layer sees, or None when unknown."""
    try:
        tensor = layer.input
    except (AttributeError, ValueError):  # never called, or called on several different inputs
        return None
    if isinstance(tensor, (list, tuple)):  # (sequence, mask) when an upstream layer masks
        tensor = tensor[0]
    shape = getattr(tensor, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) > 1 and shape[1] is not None else None


def _needs_unroll(layer: Any, target: str | None) -> bool:
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        inner = layer.forward_layer
    elif isinstance(layer, keras.layers.RNN):
        inner = layer
    else:
        return False
    if inner.unroll:
        return False
    if target is None or not target_info(target).keeps_loops:
        return True
    steps = _rnn_steps(layer)
    return steps is not None and steps <= TFLITE_UNROLL_MAX_STEPS


def _unrolled_copy(layer: Any) -> Any:
    """A fresh, unbuilt copy of an RNN or Bidirectional layer with ``unroll=True``."""
    import keras

    config = layer.get_config()
    if isinstance(layer, keras.layers.Bidirectional):
        for key in ("layer", "backward_layer"):
            if config.get(key):
                config[key]["config"]["unroll"] = True
    else:
        config["unroll"] = True
    return layer.__class__.from_config(config)


def prepare_for_export(model: keras.Model, *, target: str | None = None) -> tuple[keras.Model, list[str]]:
    """Return a model equivalent to ``model`` that converts to ``target`` with builtin ops, and notes.

    Today the only rewrite is unrolling recurrent layers (LSTM, GRU, SimpleRNN, RNN, Bidirectional), which
    Core ML needs; for a target whose converter keeps loops (``TargetInfo.keeps_loops``: TFLite) layers with
    more than TFLITE_UNROLL_MAX_STEPS (64) steps keep their WHILE loop instead. The default (None) gives one
    model fit for every converter. An unknown target name is UnsupportedError.
    Layers that need no change are shared with ``model`` (same weights, no copy); rewritten layers get a
    copy of the original weights. The model is returned unchanged, with no notes, when nothing applies.
    Raises UnsupportedError when an RNN cannot be unrolled (e.g. its time dimension is unknown).
    """
    import keras

    if target is not None:
        target_info(target)  # unknown: UnsupportedError
    to_unroll = [layer for layer in _walk_layers(model) if _needs_unroll(layer, target)]
    if not to_unroll:
        return model, []
    unknown = [layer.name for layer in to_unroll if _rnn_steps(layer) is None]
    if unknown:
        raise UnsupportedError(
            f"recurrent layer(s) {', '.join(unknown)} have an unknown number of time steps",
            hint="give the sequence length in keras.Input(shape=(steps, ...)) so the RNN can be unrolled",
        )
    from keras.src.models.functional import Functional

    if not isinstance(model, (keras.Sequential, Functional)):
        # clone_model can only rebuild a graph it can see: Sequential or Functional.
        raise UnsupportedError(
            f"model {model.name!r} is a subclassed model with recurrent layers that must be unrolled",
            hint="rebuild it as a Functional or Sequential model, or create its RNN layers with unroll=True",
        )

    targets = {id(layer) for layer in to_unroll}
    replaced: list[tuple[Any, Any]] = []

    def clone_layer(layer: Any) -> Any:
        if id(layer) in targets:
            copy = _unrolled_copy(layer)
            replaced.append((layer, copy))
            return copy
        # Sharing the layer keeps its weights without a copy and leaves the original model intact.
        return layer

    try:
        clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
        for original, copy in replaced:
            copy.set_weights(original.get_weights())
    except Exception as exc:
        raise ConversionError(f"could not unroll the recurrent layers of {model.name!r}: {exc}") from exc
    names = ", ".join(layer.name for layer in to_unroll)
    noun = "layer" if len(to_unroll) == 1 else "layers"
    note = f"unrolled {len(to_unroll)} recurrent {noun} ({names}) for a fixed-shape export"
    return clone, [note]


def _endpoint(model: keras.Model, count: int) -> Callable[..., Any]:
    if count == 1:
        return lambda x: model(x, training=False)
    return lambda *xs: model(list(xs), training=False)


def export_saved_model(model: keras.Model, directory: Path, *, batch: int = 1) -> Path:
    """Write ``model`` as a SavedModel with one ``serve`` endpoint of fixed shapes (batch ``batch``, default 1).

    The directory is created (or overwritten) and returned. Both converters read it: TFLite with
    ``TFLiteConverter.from_saved_model`` and Core ML with the endpoint's concrete function, obtained from
    ``tf.saved_model.load(directory).serve.get_concrete_function()`` (keep the loaded object alive while
    converting: its variables are freed with it). Raises BadInputError for unknown non-batch dims and
    ConversionError when Keras cannot trace the model.
    """
    import keras

    signature = fixed_input_signature(model, batch=batch)
    directory = Path(directory)
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", _endpoint(model, len(signature)), input_signature=signature)
        archive.write_out(str(directory), verbose=False)
    except Exception as exc:
        raise ConversionError(f"could not export {model.name!r} to a SavedModel: {exc}") from exc
    return directory
