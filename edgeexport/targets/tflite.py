"""TFLite/LiteRT target: the TFLite converter on a fixed-shape SavedModel, with the preset's quantization.

Modes (``Quantization.tflite_mode``): ``fp32``; ``fp16`` (float16 weights); ``dynamic-int8`` (int8 weights,
float activations); ``int8`` (full integer, float I/O, calibrated); ``int8-io`` (full integer with int8
input and output tensors); ``int16x8`` (int16 activations, int8 weights, calibrated). SELECT_TF_OPS (Flex)
never goes into an artifact: a model that needs it fails with the ops named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.catalog.model import Preset
from edgeexport.errors import (
    BadInputError,
    ConversionError,
    EdgeExportError,
    UnsupportedOpError,
)
from edgeexport.quiet import captured_output
from edgeexport.sources.tfgraph import quiet_tensorflow
from edgeexport.targets.base import ConvertContext
from edgeexport.targets.overrides import matching_names, tflite_op_types
from edgeexport.types import ExportedGraph

if TYPE_CHECKING:
    from edgeexport.runtimes.tflite import TfliteRunner

CALIBRATED_MODES = frozenset({"int8", "int8-io", "int16x8"})
# Modes whose layers an override can keep in float (the MLIR quantizer's deny-list; int16x8 uses the older one).
SELECTIVE_MODES = frozenset({"int8", "int8-io"})
_FLEX_PATTERN = re.compile(r"(?:Flex ops|ops are not supported|not supported by the TFLite)[^:]*:\s*(.+)", re.I)
_TF_OP_PATTERN = re.compile(r"tf\.(\w+)")


def convert(
    exported: ExportedGraph,
    preset: Preset,
    out_path: Path,
    *,
    calibration: Mapping[str, NDArray[Any]] | None = None,
    sparse: bool = False,
) -> list[str]:
    """Convert ``exported`` with ``preset`` and write the flatbuffer to ``out_path``; return warnings.

    ``calibration`` maps input names to arrays with a leading sample axis (required by calibrated modes);
    ``sparse`` asks the converter to encode pruned weights sparsely. Raises ConversionError (exit 4) with
    the converter's message, or UnsupportedOpError naming ops the builtin op set lacks.
    """
    tf = quiet_tensorflow()
    mode = preset.quantization.tflite_mode or "fp32"
    converter = configured_converter(tf, exported, preset, calibration, sparse=sparse)
    warnings: list[str] = []
    try:
        with captured_output():
            flatbuffer = converter.convert()
            if preset.overrides and mode in SELECTIVE_MODES and calibration is not None:
                flatbuffer = _keep_in_float(tf, converter, flatbuffer, preset, exported, calibration, warnings)
    except EdgeExportError:
        raise
    except Exception as err:
        raise _conversion_error(err, preset.name) from err
    if preset.overrides and mode == "int16x8":
        # int16x8 goes through TFLite's older quantizer, which has no deny-list: a layer cannot stay in float.
        warnings.append("layer overrides are ignored for int16x8 (TFLite's int16x8 quantizer keeps no layer in float)")
    elif preset.overrides and mode not in CALIBRATED_MODES:
        warnings.append(f"layer overrides need a calibrated mode (int8, int8-io); ignored for {mode}")
    if mode == "dynamic-int8" and not _has_int8_tensor(flatbuffer):
        # The converter leaves small weights (< 1024 values) and tables only read by GATHER in float.
        warnings.append("dynamic-int8 quantized no tensor to int8: this artifact is float32 under a dynamic-int8 "
                        "name (its weights are too small or only embedding tables); use fp16 or int8 instead")
    out_path.write_bytes(flatbuffer)
    return warnings


def configured_converter(tf: Any, exported: ExportedGraph, preset: Preset,
                         calibration: Mapping[str, NDArray[Any]] | None, *, sparse: bool = False) -> Any:
    """A TFLiteConverter for ``exported`` set up for ``preset``'s mode (optimizations, op sets, calibration data,
    int8 interface); ConversionError (exit 4) when a calibrated mode has no calibration data."""
    mode = preset.quantization.tflite_mode or "fp32"
    converter = tf.lite.TFLiteConverter.from_saved_model(str(exported.directory), signature_keys=["serve"])
    optimizations: list[Any] = []
    if mode != "fp32":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in CALIBRATED_MODES:
        if calibration is None:
            raise ConversionError(f"preset {preset.name} needs calibration data")
        converter.representative_dataset = _representative_dataset(exported, calibration)
        if mode == "int16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode == "int8-io":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _has_int8_tensor(flatbuffer: bytes) -> bool:
    """Whether any tensor of the model is stored as int8 (read back through LiteRT, the runtime that will run it)."""
    from edgeexport.runtimes.tflite import TfliteRunner

    details = TfliteRunner(flatbuffer)._interp.get_tensor_details()
    return any(np.dtype(d["dtype"]) == np.int8 for d in details)


def _keep_in_float(
    tf: Any,
    converter: Any,
    flatbuffer: bytes,
    preset: Preset,
    exported: ExportedGraph,
    calibration: Mapping[str, NDArray[Any]],
    warnings: list[str],
) -> bytes:
    """Re-quantize with the override's layers left in float (TFLite's selective quantization: the calibration pass,
    then the quantization pass with a deny-list, ``tflite_selective.quantize``)."""
    from edgeexport.targets.tflite_selective import calibrate, node_names, quantize

    nodes = matching_names(preset.overrides, node_names(flatbuffer))
    op_types = tflite_op_types(preset.overrides)
    named = [o.name for o in preset.overrides if o.name]
    if named and not nodes:
        raise BadInputError(
            f"preset {preset.name}: no layer matches override name(s) {', '.join(named)}",
            hint="names are layer names as `edgeexport inspect` and the localization report show them",
        )
    converter.representative_dataset = _representative_dataset(exported, calibration)
    calibrated = calibrate(converter)
    warnings.append(f"kept {len(nodes)} layer(s) and op type(s) {op_types or 'none'} in float as the preset overrides ask")
    result: bytes = quantize(tf, calibrated, preset.quantization.tflite_mode or "", nodes, op_types,
                             disable_per_channel=bool(converter._experimental_disable_per_channel))
    if (preset.quantization.tflite_mode or "") == "int8-io":
        result = _int8_interface(result, preset.name)
    return result


_TFLITE_INT8 = 9  # TensorType.INT8 in the TFLite schema


def _has_int8_interface(flatbuffer: bytes) -> bool:
    from edgeexport.runtimes.tflite import TfliteRunner

    runner = TfliteRunner(flatbuffer)
    return all(spec.dtype == "int8" for spec in runner.inputs + runner.outputs)


def _int8_interface(flatbuffer: bytes, preset: str) -> bytes:
    """The quantization debugger ignores int8 I/O; put the int8 interface back (QUANTIZE/DEQUANTIZE at the edges)."""
    import tempfile

    from tensorflow.lite.tools.optimize.python import (
        _pywrap_modify_model_interface as interface,
    )

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "float_io.tflite", Path(tmp) / "int8_io.tflite"
        source.write_bytes(flatbuffer)
        status = interface.modify_model_interface(str(source), str(target), _TFLITE_INT8, _TFLITE_INT8)
        if status != 0 or not target.is_file() or not _has_int8_interface(target.read_bytes()):
            raise ConversionError(
                f"preset {preset}: cannot give the model int8 inputs/outputs with these overrides",
                hint="an override that keeps the first or last layer in float needs float I/O: use int8, not int8-io",
            )
        return target.read_bytes()


def _representative_dataset(
    exported: ExportedGraph, calibration: Mapping[str, NDArray[Any]]
) -> Callable[[], Iterator[dict[str, NDArray[Any]]]]:
    """One sample at a time, in file order, so the same data always gives the same quantization.

    The converter asks for the first sample when its float conversion is done and the calibrator is built: the
    memory that conversion freed goes back to the system then (``release_memory``), not after the whole run, so the
    calibration's own allocations do not stack on it (issue 17: ResNet152V2 int8 in the converter child)."""
    from edgeexport.release import release_memory

    names = exported.input_names
    count = min(len(calibration[name]) for name in names)

    def samples() -> Iterator[dict[str, NDArray[Any]]]:
        release_memory()
        for index in range(count):
            yield {name: calibration[name][index : index + 1] for name in names}

    return samples


def _conversion_error(err: Exception, preset: str) -> Exception:
    text = str(err)
    match = _FLEX_PATTERN.search(text)
    if match or "Select TF ops" in text or "FlexDelegate" in text:
        ops = sorted(set(_TF_OP_PATTERN.findall(text)))
        if ops:
            return UnsupportedOpError(
                dict.fromkeys(ops, 1),
                where=f"TFLite builtin ops ({preset})",
                hint="these TensorFlow ops would need the Flex delegate (SELECT_TF_OPS), which mobile apps must bundle",
            )
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    message = next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(err).__name__)
    return ConversionError(f"TFLite conversion ({preset}) failed: {message[:400]}")


class TfliteTarget:
    """The ``tflite`` target: ``.tflite`` flatbuffers, run with LiteRT (which runs every artifact it loads)."""

    name = "tflite"
    suffix = ".tflite"
    executes_here = True

    def accepts(self, preset: Preset) -> bool:
        return self.name in preset.targets

    def convert(self, exported: ExportedGraph, preset: Preset, out_path: Path, ctx: ConvertContext) -> list[str]:
        return convert(exported, preset, out_path, calibration=ctx.calibration, sparse=ctx.sparse)

    def open_runner(self, path: Path, *, precision: str = "auto", runtime: str = "auto") -> TfliteRunner:
        from edgeexport.runtimes.tflite import TfliteRunner

        return TfliteRunner(path)

    def embed_metadata(self, path: Path, manifest: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
        from edgeexport.targets.metadata import embed_tflite

        return embed_tflite(path, manifest)


TARGET = TfliteTarget()
