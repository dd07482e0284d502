"""ONNX -> TensorFlow through onnx2tf. The only module that imports onnx2tf, so the converter can be replaced here.

onnx-tf is dead with onnx >= 1.15 (TOOLCHAIN.md); onnx2tf 2.x is maintained. We use its ``tf_converter`` backend,
which builds a tf_keras model from one Python module per ONNX op, and ask it not to save anything
(``disable_model_save``): edgeexport writes its own fixed-shape SavedModel from the returned model. onnx2tf turns
3-D/4-D/5-D tensors channels-last; ``TfGraph`` records, per input and output, the axes it permuted.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from edgeexport.errors import ConversionError, UnsupportedOpError

# onnx2tf reports an op it cannot convert in messages like "... OP: Foo is not yet implemented"
_NOT_IMPLEMENTED = re.compile(r"(?:OP|op_type)[:=]\s*'?(\w+)'?.{0,80}not (?:yet )?(?:implemented|supported)", re.S)


@dataclass(frozen=True)
class TfGraph:
    """The converted model and how its boundary differs from the ONNX graph.

    ``model`` is a tf_keras Model taking inputs in ONNX input order. ``input_axes``/``output_axes`` map each ONNX
    tensor name to the permutation onnx2tf applied (``tf = onnx.transpose(axes)``), or ``None`` when it kept the
    ONNX layout. ``seconds`` is the wall time of the conversion; ``log`` is what onnx2tf printed.
    """

    model: Any
    input_axes: dict[str, tuple[int, ...] | None]
    output_axes: dict[str, tuple[int, ...] | None]
    seconds: float
    log: str


def channels_last(rank: int) -> tuple[int, ...]:
    """The permutation NC... -> N...C for a tensor of ``rank`` dimensions (``(0, 2, 3, 1)`` for rank 4)."""
    return (0, *range(2, rank), 1)


def to_tensorflow(
    model: Any,
    input_shapes: dict[str, tuple[int, ...]],
    output_shapes: dict[str, tuple[int, ...]],
    *,
    keep_inputs: Sequence[str] = (),
    verbose: bool = False,
) -> TfGraph:
    """Convert an in-memory ``onnx.ModelProto`` whose inputs have fixed shapes (``input_shapes``, ONNX layout).

    ``output_shapes`` are the ONNX output shapes (from shape inference) used to tell which outputs onnx2tf made
    channels-last. ``keep_inputs`` names inputs onnx2tf must not transpose (it then treats them as already
    channels-last; default none).
    onnx2tf's progress output is captured unless ``verbose`` (default False). Raises
    UnsupportedOpError when onnx2tf names an op it lacks and ConversionError for any other failure."""
    from edgeexport.sources.tfgraph import quiet_tensorflow

    quiet_tensorflow()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeexport-onnx2tf-") as scratch, _quiet(verbose) as log:
        try:
            import onnx2tf
            import tf_keras

            # tf_keras numbers layers per process ("tf.linalg.matmul_12"), and those names reach the .tflite's
            # tensor names: start each conversion from zero so the same model gives the same bytes every time.
            tf_keras.backend.clear_session()
            keras_model = onnx2tf.convert(
                onnx_graph=model,
                output_folder_path=os.path.join(scratch, "out"),
                tflite_backend="tf_converter",
                disable_model_save=True,
                keep_nwc_or_nhwc_or_ndhwc_input_names=list(keep_inputs) or None,
                # TFLite has no builtin Erf (exact GELU exports as Erf): onnx2tf then builds Abramowitz-Stegun 7.1.26
                # from builtin ops instead (absolute error below 1.5e-7), so no Flex op reaches the artifact.
                replace_to_pseudo_operators=["erf"],
                non_verbose=not verbose,
                verbosity="debug" if verbose else "error",
                # the memmap directory for onnxruntime's check outputs would otherwise go to the system temp dir
                onnxruntime_output_memmap_dir=os.path.join(scratch, "memmap"),
            )
            error: BaseException | None = None
        except SystemExit as exit_:  # onnx2tf exits the interpreter on some failures
            error = exit_
        except Exception as err:
            error = err
    text = log.getvalue() if log is not None else ""
    if error is not None:
        raise _failure(error, text) from error
    if keras_model is None:
        raise ConversionError("onnx2tf returned no TensorFlow model")
    names = list(input_shapes)
    input_axes = _input_axes(keras_model, names, input_shapes, set(keep_inputs))
    layouts = getattr(keras_model, "onnx_output_layouts", {}) or {}
    output_axes = _output_axes(keras_model, list(output_shapes), output_shapes, layouts)
    return TfGraph(keras_model, input_axes, output_axes, time.perf_counter() - started, text)


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[Any]:
    if verbose:
        yield None
        return
    from edgeexport.quiet import captured_output

    # to_tensorflow catches converter errors inside this block, so captured_output never replays the log on
    # stderr: the user sees one line, and the log only with verbose=True.
    with captured_output() as captured:
        yield captured


def _failure(error: BaseException, log: str) -> Exception:
    text = f"{error}\n{log}"
    missing = sorted(set(_NOT_IMPLEMENTED.findall(text)))
    if missing:
        return UnsupportedOpError(missing, where="onnx2tf (ONNX -> TensorFlow)")
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, SystemExit):
        lines = [line.strip() for line in log.splitlines() if "error" in line.lower()]
        message = lines[-1] if lines else f"onnx2tf exited with status {error.code}"
    return ConversionError(f"ONNX -> TensorFlow conversion (onnx2tf) failed: {message[:400]}",
                           hint="run with verbose=True to see onnx2tf's log")


def _static(shape: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)


def _input_axes(keras_model: Any, names: Sequence[str], shapes: dict[str, tuple[int, ...]],
                kept: set[str]) -> dict[str, tuple[int, ...] | None]:
    """onnx2tf transposes 3-D/4-D/5-D inputs channels-last; confirm it from the shapes it built."""
    tf_inputs = list(keras_model.inputs)
    if len(tf_inputs) != len(names):
        raise ConversionError(f"onnx2tf built {len(tf_inputs)} inputs for {len(names)} ONNX inputs")
    axes: dict[str, tuple[int, ...] | None] = {}
    for name, tensor in zip(names, tf_inputs):
        onnx_shape, tf_shape = shapes[name], _static(tensor.shape)
        axes[name] = _match(name, onnx_shape, tf_shape, prefer_permuted=name not in kept)
    return axes


def _output_axes(keras_model: Any, names: Sequence[str], shapes: dict[str, tuple[int, ...]],
                 layouts: dict[str, bool]) -> dict[str, tuple[int, ...] | None]:
    tf_outputs = list(keras_model.outputs)
    if len(tf_outputs) != len(names):
        raise ConversionError(f"onnx2tf built {len(tf_outputs)} outputs for {len(names)} ONNX outputs")
    axes: dict[str, tuple[int, ...] | None] = {}
    for name, tensor in zip(names, tf_outputs):
        axes[name] = _match(name, shapes[name], _static(tensor.shape), prefer_permuted=bool(layouts.get(name, False)))
    return axes


def _match(name: str, onnx_shape: tuple[int, ...], tf_shape: tuple[int | None, ...],
           *, prefer_permuted: bool) -> tuple[int, ...] | None:
    """Which of (identity, channels-last) turns ``onnx_shape`` into ``tf_shape``; onnx2tf's own flag decides
    when both fit (e.g. a 1x8x8 tensor)."""
    rank = len(onnx_shape)

    def fits(candidate: tuple[int, ...]) -> bool:
        return len(candidate) == len(tf_shape) and all(t is None or t == c for c, t in zip(candidate, tf_shape))

    permuted = channels_last(rank) if 3 <= rank <= 5 else None
    options: list[tuple[int, ...] | None] = [permuted, None] if prefer_permuted else [None, permuted]
    for axes in options:
        if axes is None and fits(tuple(onnx_shape)):
            return None
        if axes is not None and fits(tuple(onnx_shape[a] for a in axes)):
            return axes
    if _same_but_unit_dims(onnx_shape, tf_shape):
        # onnx2tf builds a scalar or a size-1 axis as [None] / [1]: the endpoint reshapes it back (onnx._write_serve)
        return None
    raise ConversionError(
        f"onnx2tf changed the shape of '{name}' from {list(onnx_shape)} to {list(tf_shape)} in a way edgeexport "
        "cannot map back"
    )


def _same_but_unit_dims(onnx_shape: tuple[int, ...], tf_shape: tuple[int | None, ...]) -> bool:
    """True when the two shapes differ only by size-1 axes (an unknown TF axis counting as 1): a scalar that
    onnx2tf built as [None], or a [1, n] built as [n]."""
    return [d for d in onnx_shape if d != 1] == [d for d in tf_shape if d not in (1, None)] and \
        len(onnx_shape) != len(tf_shape)
