"""Core ML w8a8: activation ranges calibrated with our MIL executor off macOS, then checked numerically."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeexport.runtimes.mil import load_program
from tests.support import convert


def test_w8a8_inserts_activation_quantization_and_verifies(samples: Path, tmp_path: Path) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, preset="w8a8", calibration=samples / "digits.npz",
                     verify_data=samples / "digits.npz", verify_samples=128)
    assert [a.artifact.target for a in report.artifacts] == ["coreml"]
    entry = report.artifacts[0]
    ops = Counter(load_program(entry.artifact.path).op_histogram())
    assert ops["quantize"] >= 3 and ops["dequantize"] >= 3
    # int8 weights too: coremltools compresses tensors of 2,048+ elements, two of the five here
    assert ops["constexpr_affine_dequantize"] == 2
    assert entry.verification is not None and entry.verification.passed, entry.verification.failure_line()
    accuracy = entry.verification.to_dict()["outputs"][0]["metrics"]["classifier"]
    assert accuracy["accuracy_drop_points"] <= 2.0


def test_w8a8_needs_calibration(samples: Path, tmp_path: Path) -> None:
    import pytest

    from edgeexport.errors import DataError

    with pytest.raises(DataError, match="calibration"):
        convert(samples / "digits_cnn.keras", tmp_path, preset="w8a8")


def test_activation_ranges_cover_every_calibration_sample() -> None:
    """coremltools 9.0 keeps only the last sample's range (targets/coreml_activations.py): calibrated on a sample
    reaching 8.0 then one reaching 1.0, every activation's scale must be 8/127, not 1/127 (which clips the first
    sample's values to 1.0)."""
    import numpy as np

    from edgeexport.quiet import captured_output, import_coremltools
    from edgeexport.targets.coreml_activations import quantize_activations

    ct = import_coremltools()
    from coremltools.converters.mil import Builder as mb

    weight = np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1)  # a 1x1 conv that copies its input

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 6, 6))], opset_version=ct.target.iOS17)
    def program(x):  # type: ignore[no-untyped-def]
        return mb.relu(x=mb.conv(x=mb.relu(x=x), weight=weight, name="copy"), name="out")

    with captured_output():
        model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17)  # fp16, as w8a8
    grid = np.linspace(0.0, 1.0, 144, dtype=np.float32).reshape(1, 4, 6, 6)
    quantized = quantize_activations(model, {"x": np.concatenate([8.0 * grid, grid])})
    ops = quantized._mil_program.functions["main"].operations
    # every quantized tensor here (the first relu's output, the copy) spans 0 .. 8.0 over the two samples
    ranges = [127.0 * float(np.asarray(op.inputs["scale"].val).ravel()[0]) for op in ops if op.op_type == "quantize"]
    assert len(ranges) >= 2 and all(abs(r - 8.0) < 0.01 for r in ranges), ranges
