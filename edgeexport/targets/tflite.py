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
from typing import Any

import numpy as np

from edgeexport.catalog.model import Preset
from edgeexport.errors import ConversionError, UnsupportedOpError
from edgeexport.sources.base import ExportedGraph
from edgeexport.sources.tfgraph import captured_output, quiet_tensorflow

CALIBRATED_MODES = frozenset({"int8", "int8-io", "int16x8"})
_FLEX_PATTERN = re.compile(r"(?:Flex ops|ops are not supported|not supported by the TFLite)[^:]*:\s*(.+)", re.I)
_TF_OP_PATTERN = re.compile(r"tf\.(\w+)")


def convert(
    exported: ExportedGraph,
    preset: Preset,
    out_path: Path,
    *,
    calibration: Mapping[str, np.ndarray] | None = None,
    sparse: bool = False,
) -> list[str]:
    """Convert ``exported`` with ``preset`` and write the flatbuffer to ``out_path``; return warnings.

    ``calibration`` maps input names to arrays with a leading sample axis (required by calibrated modes);
    ``sparse`` asks the converter to encode pruned weights sparsely. Raises ConversionError (exit 4) with
    the converter's message, or UnsupportedOpError naming ops the builtin op set lacks.
    """
    tf = quiet_tensorflow()
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
    try:
        with captured_output():
            flatbuffer = converter.convert()
    except Exception as err:  # noqa: BLE001 - every converter failure becomes one ConversionError, chained
        raise _conversion_error(err, preset.name) from err
    out_path.write_bytes(flatbuffer)
    return []


def _representative_dataset(
    exported: ExportedGraph, calibration: Mapping[str, np.ndarray]
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """One sample at a time, in file order, so the same data always gives the same quantization."""
    names = exported.input_names
    count = min(len(calibration[name]) for name in names)

    def samples() -> Iterator[dict[str, np.ndarray]]:
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
                {op: 1 for op in ops},
                where=f"TFLite builtin ops ({preset})",
                hint="these TensorFlow ops would need the Flex delegate (SELECT_TF_OPS), which mobile apps must bundle",
            )
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    message = next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(err).__name__)
    return ConversionError(f"TFLite conversion ({preset}) failed: {message[:400]}")
