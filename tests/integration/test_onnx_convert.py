"""ONNX models built in code (onnx.helper) converted to TFLite and Core ML, checked against onnxruntime.

Each graph is exported once through onnx2tf (the expensive step) and the SavedModel is converted by the real
targets: TFLite fp32 and full-integer int8 (calibrated), Core ML fp32 and fp16. Artifacts run in LiteRT and in
the numpy MIL executor, fed the same seeded inputs as onnxruntime with the recorded axis permutations applied.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import SAMPLES

sys.path.insert(0, str(SAMPLES))
import make_onnx_samples as samples  # noqa: E402

from edgeexport.errors import UnsupportedOpError  # noqa: E402
from edgeexport.sources import load, open_source  # noqa: E402
from edgeexport.sources.base import ExportedGraph  # noqa: E402
from edgeexport.types import LoadOptions, TensorSpec  # noqa: E402

CALIBRATION_SAMPLES = 16
CHECK_SAMPLES = 4
# (max abs error relative to the largest reference value, min cosine) per preset
TOLERANCE = {"fp32": (1e-4, 0.99999), "fp16": (2e-2, 0.999), "int8": (0.15, 0.98)}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _permute(arrays: Mapping[str, np.ndarray], specs: tuple[TensorSpec, ...], exported: ExportedGraph,
             kind: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Source-named, source-layout arrays -> endpoint-named, artifact-layout arrays (``artifact = ref.transpose``)."""
    axes = {p.tensor: p.axes for p in exported.permutations if p.kind == kind}
    return {endpoint: np.ascontiguousarray(arrays[spec.name].transpose(axes[spec.name])) if spec.name in axes
            else arrays[spec.name] for spec, endpoint in zip(specs, names)}


class Exported:
    """One ONNX model loaded and exported once; converts to any (target, preset) and measures the error."""

    def __init__(self, path: Path, workdir: Path, options: LoadOptions = LoadOptions()) -> None:
        self.model = load(open_source(path, options))
        self.workdir = workdir
        self.exported = self.model.export_saved_model(workdir / "savedmodel")
        inputs = self.model.summary.inputs
        rng = np.random.default_rng(7)
        self.calibration = {s.name: rng.uniform(0, 1, (CALIBRATION_SAMPLES, *s.shape[1:])).astype(np.float32)
                            for s in inputs}
        self.feeds = {s.name: rng.uniform(0, 1, (CHECK_SAMPLES, *s.shape[1:])).astype(np.float32) for s in inputs}
        self.reference = self.model.run(self.feeds)

    def convert(self, target: str, preset_name: str) -> Path:
        import importlib

        from edgeexport.catalog import load_preset

        preset = load_preset(preset_name)
        module = importlib.import_module(f"edgeexport.targets.{target}")
        out = self.workdir / f"model.{preset_name}.{'tflite' if target == 'tflite' else 'mlpackage'}"
        calibration = None
        if preset.quantization.requires_calibration:
            calibration = _permute(self.calibration, self.model.summary.inputs, self.exported, "input",
                                   self.exported.input_names)
        module.convert(self.exported, preset, out, calibration=calibration)
        return out

    def errors(self, runner: Any) -> dict[str, tuple[float, float]]:
        """Per output: (max abs error / max |reference|, cosine), sample by sample through ``runner``."""
        summary = self.model.summary
        feeds = _permute(self.feeds, summary.inputs, self.exported, "input", self.exported.input_names)
        expected = _permute(self.reference, summary.outputs, self.exported, "output", self.exported.output_names)
        got: dict[str, list[np.ndarray]] = {name: [] for name in expected}
        for i in range(CHECK_SAMPLES):
            out = runner.run({k: v[i : i + 1] for k, v in feeds.items()})
            for name in expected:
                got[name].append(np.asarray(out[name], dtype=np.float32).reshape(expected[name][i : i + 1].shape))
        result = {}
        for name, ref in expected.items():
            value = np.concatenate(got[name])
            result[name] = (float(np.abs(value - ref).max() / np.abs(ref).max()), _cosine(value, ref))
        return result


def _check(exported: Exported, target: str, preset: str) -> dict[str, tuple[float, float]]:
    path = exported.convert(target, preset)
    if target == "tflite":
        from edgeexport.runtimes.tflite import TfliteRunner

        runner: Any = TfliteRunner(path)
    else:
        from edgeexport.runtimes.coreml import CoremlRunner

        runner = CoremlRunner(path, runtime="mil")
        try:
            errors = exported.errors(runner)
        except UnsupportedOpError as err:
            pytest.skip(f"the MIL executor cannot run this Core ML program yet: {err.one_line()}")
        return _assert_within(errors, preset)
    return _assert_within(exported.errors(runner), preset)


def _assert_within(errors: dict[str, tuple[float, float]], preset: str) -> dict[str, tuple[float, float]]:
    max_rel, min_cos = TOLERANCE[preset]
    for name, (rel, cos) in errors.items():
        assert rel <= max_rel and cos >= min_cos, f"{name}: max abs error {rel:.3g} x max|ref|, cosine {cos:.6f} ({preset})"
    return errors


_CACHE: dict[str, Exported] = {}


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Exported]:
    import onnx

    def get(name: str, keep_layout: bool = False) -> Exported:
        key = f"{name}-{keep_layout}"
        if key not in _CACHE:
            workdir = tmp_path_factory.mktemp(key)
            path = workdir / f"{name}.onnx"
            onnx.save(getattr(samples, f"build_{name}")(), path)
            _CACHE[key] = Exported(path, workdir, LoadOptions(keep_layout=keep_layout))
        return _CACHE[key]

    yield get
    for value in _CACHE.values():
        shutil.rmtree(value.workdir, ignore_errors=True)
    _CACHE.clear()


MODELS = ["cnn_residual", "mlp", "transformer", "depthwise", "two_io", "dynamic_batch"]
CASES = [("tflite", "fp32"), ("tflite", "int8"), ("coreml", "fp32"), ("coreml", "fp16")]
PARAMS = [pytest.param(m, t, p, id=f"{m}-{t}-{p}") for m in MODELS for t, p in CASES]


@pytest.mark.parametrize(("name", "target", "preset"), PARAMS)
def test_converts_and_matches_onnxruntime(exported_model: Callable[..., Exported], name: str, target: str,
                                          preset: str) -> None:
    _check(exported_model(name), target, preset)


def test_layouts_are_recorded(exported_model: Callable[..., Exported]) -> None:
    """4-D image tensors become NHWC with exact permutations; names become valid TF names, order preserved."""
    cnn = exported_model("cnn_residual").exported
    assert cnn.input_names == ("input_1",)
    assert [(p.kind, p.tensor, p.axes) for p in cnn.permutations] == [("input", "input.1", (0, 2, 3, 1))]
    two = exported_model("two_io").exported
    assert two.input_names == ("image", "meta") and two.output_names == ("class_logits", "feature_map")
    assert {(p.kind, p.tensor, p.axes) for p in two.permutations} == {
        ("input", "image", (0, 2, 3, 1)), ("output", "feature_map", (0, 2, 3, 1))}


def test_transformer_keeps_token_layout(exported_model: Callable[..., Exported]) -> None:
    exported = exported_model("transformer").exported
    assert exported.permutations == ()
    assert any("keep their ONNX layout" in note for note in exported.notes)


def test_keep_layout_takes_nchw(exported_model: Callable[..., Exported]) -> None:
    from edgeexport.runtimes.tflite import TfliteRunner

    kept = exported_model("two_io", keep_layout=True)
    assert kept.exported.permutations == ()
    runner = TfliteRunner(kept.convert("tflite", "fp32"))
    shapes = {spec.name: spec.shape for spec in (*runner.inputs, *runner.outputs)}
    assert shapes["image"] == (1, 3, 8, 8) and shapes["feature_map"] == (1, 6, 8, 8)
    _assert_within(kept.errors(runner), "fp32")


def test_dynamic_batch_becomes_one(exported_model: Callable[..., Exported]) -> None:
    from edgeexport.runtimes.tflite import TfliteRunner

    dyn = exported_model("dynamic_batch")
    assert dyn.model.summary.inputs[0].shape == (None, 3, 8, 8)
    assert dyn.model.summary.outputs[0].shape == (None, 4)
    runner = TfliteRunner(dyn.convert("tflite", "fp32"))
    assert runner.inputs[0].shape == (1, 8, 8, 3)
    # the reference itself runs a batch of CHECK_SAMPLES at once through the symbolic batch
    assert dyn.reference["y"].shape == (CHECK_SAMPLES, 4)
