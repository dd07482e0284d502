"""Core ML w8a8: activation ranges calibrated with our MIL executor off macOS, then checked numerically."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.support import convert
from edgeexport.runtimes.mil import load_program


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
