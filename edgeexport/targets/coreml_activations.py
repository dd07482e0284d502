"""w8a8 for Core ML: int8 activation quantization calibrated on real samples, then int8 weights.

coremltools calibrates activation ranges by running the model with Core ML, which exists only on macOS. On
other systems we run the same calibration with our numpy MIL executor: coremltools asks its ModelDebugger for
intermediate tensors, and we answer from ``MilProgram.run(keep_intermediates=True)`` in fp32. The quantize /
dequantize insertion itself stays coremltools' own. This leans on one private hook
(``_post_training_quantization.ModelDebugger``); if coremltools moves it, conversion fails with a clear error
rather than silently skipping calibration.

It also corrects coremltools 9.0's range bookkeeping, on every system: ``ModelDebugger.record_intermediate_output``
and ``_update_tensor_range`` overwrite a tensor's ``rmin``/``rmax`` with the current sample's before merging, so
the "running" range is the last calibration sample's alone, and every other sample's larger values are clipped
(measured on the trained MobileNetV2 .pt2, benchmarks/RESULTS.md issue 14). We keep the min/max over all samples,
which is what the function's documentation promises.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import ConversionError

MAX_CALIBRATION_SAMPLES = 128


def quantize_activations(model: Any, calibration: Mapping[str, NDArray[Any]], *,
                         op_name_configs: Mapping[str, None] | None = None,
                         op_type_configs: Mapping[str, None] | None = None) -> Any:
    """``model`` with int8 activations (linear symmetric), ranges from up to MAX_CALIBRATION_SAMPLES samples.

    Ops named in ``op_name_configs`` / of a type in ``op_type_configs`` (values None) keep float inputs: that is
    how a preset override keeps a layer out of activation quantization."""
    from coremltools.optimize import coreml as cto
    from coremltools.optimize.coreml.experimental import (
        OpActivationLinearQuantizerConfig,
        linear_quantize_activations,
    )

    names = list(calibration)
    count = min(MAX_CALIBRATION_SAMPLES, *(len(calibration[name]) for name in names))
    samples = [{name: calibration[name][i : i + 1] for name in names} for i in range(count)]
    config = cto.OptimizationConfig(global_config=OpActivationLinearQuantizerConfig(mode="linear_symmetric"),
                                    op_name_configs=dict(op_name_configs or {}),
                                    op_type_configs=dict(op_type_configs or {}))
    with _running_ranges(), _calibrate_with_mil_executor(model):
        try:
            return linear_quantize_activations(model, config, samples)
        except ValueError as err:  # e.g. "quantize op: scale cannot be 0" for a tensor that is 0 on every sample
            raise ConversionError(f"Core ML activation quantization failed: {err}",
                                  hint="calibrate on real samples, or use w8 (weights only)") from err


def merge_range(stats: dict[str, dict[str, float]], name: str, value: Any) -> None:
    """Widen ``stats[name]``'s ``rmin``/``rmax`` (coremltools' keys) to cover ``value``'s values."""
    array = np.asarray(value)
    low, high = float(np.min(array)), float(np.max(array))
    entry = stats.setdefault(name, {})
    entry["rmin"] = min(low, entry["rmin"]) if "rmin" in entry else low
    entry["rmax"] = max(high, entry["rmax"]) if "rmax" in entry else high


@contextlib.contextmanager
def _running_ranges() -> Iterator[None]:
    """coremltools' two range recorders replaced by ``merge_range`` while calibrating (see the module docstring)."""
    try:
        from coremltools.optimize.coreml.experimental import _model_debugger, _post_training_quantization
    except ImportError as err:
        raise ConversionError("this coremltools has no activation calibration hook", hint="use w8") from err
    debugger = _model_debugger.ModelDebugger
    saved = debugger.__dict__["record_intermediate_output"], _post_training_quantization._update_tensor_range
    debugger.record_intermediate_output = staticmethod(lambda value, name, stats: merge_range(stats, name, value))
    _post_training_quantization._update_tensor_range = lambda name, value, stats: merge_range(stats, name, value)
    try:
        yield
    finally:
        debugger.record_intermediate_output, _post_training_quantization._update_tensor_range = saved


@contextlib.contextmanager
def _calibrate_with_mil_executor(model: Any) -> Iterator[None]:
    if platform.system() == "Darwin":
        yield  # the real Core ML runtime is there
        return
    try:
        from coremltools.optimize.coreml.experimental import (
            _model_debugger,
            _post_training_quantization,
        )
    except ImportError as err:
        raise ConversionError("this coremltools has no activation calibration hook for Linux", hint="use w8") from err
    from edgeexport.runtimes.mil.program import MilProgram

    program = MilProgram(model._mil_program, source="w8a8 calibration")

    class MilDebugger(_model_debugger.ModelDebugger):  # type: ignore[misc]
        def predict_intermediate_outputs(self, inputs: Any, intermediate_output_names: Any,
                                         compute_units: Any = None) -> dict[str, NDArray[Any]]:
            outputs = program.run({k: np.asarray(v) for k, v in inputs.items()}, precision="fp32",
                                  keep_intermediates=True)
            values = {**program.intermediates, **outputs}
            return {name: np.asarray(values[name]) for name in intermediate_output_names if name in values}

    original = _post_training_quantization.ModelDebugger
    _post_training_quantization.ModelDebugger = MilDebugger
    try:
        yield
    finally:
        _post_training_quantization.ModelDebugger = original
