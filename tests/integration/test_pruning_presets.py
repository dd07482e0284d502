"""Pruning presets end to end on the digits sample: achieved sparsity, real channel removal, accuracy kept by
distillation, and the composition with quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import convert
from edgeexport.runtimes.tflite import TfliteRunner


def _accuracy(path: Path, digits: dict[str, np.ndarray]) -> float:
    probs = TfliteRunner(path).run({"image": digits["test__image"]})["probs"]
    return float(np.mean(np.argmax(probs, axis=1) == digits["test__labels"]))


@pytest.mark.parametrize(("preset", "target_sparsity"), [("prune-50", 0.5), ("prune-75", 0.75), ("prune-2:4", 0.5)])
def test_sparsity_presets_reach_their_target_and_keep_accuracy(samples: Path, tmp_path: Path, preset: str,
                                                                target_sparsity: float,
                                                                digits_data: dict[str, np.ndarray]) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("tflite",), preset=preset,
                     calibration=samples / "digits.npz", verify_data=samples / "digits.npz")
    entry = report.artifacts[0]
    assert entry.pruning is not None
    assert abs(entry.pruning.achieved_sparsity - target_sparsity) <= 0.01
    assert entry.pruning.finetune_epochs > 0
    assert entry.pruning.finetune_mse_after < entry.pruning.finetune_mse_before
    assert entry.verification is not None and entry.verification.passed, entry.verification.failure_line()
    assert _accuracy(entry.artifact.path, digits_data) >= 0.9


def test_channel_pruning_removes_parameters_and_macs(samples: Path, tmp_path: Path,
                                                     digits_data: dict[str, np.ndarray]) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("tflite",), preset="prune-channels-25",
                     calibration=samples / "digits.npz", verify_data=samples / "digits.npz")
    pruning = report.artifacts[0].pruning
    assert pruning is not None
    assert pruning.params_after < 0.8 * pruning.params_before
    assert pruning.macs_after is not None and pruning.macs_before is not None
    assert pruning.macs_after < 0.8 * pruning.macs_before
    fp32 = convert(samples / "digits_cnn.keras", tmp_path / "fp32", targets=("tflite",), preset="fp32", verify=False)
    assert report.artifacts[0].artifact.size_bytes < fp32.artifacts[0].artifact.size_bytes
    assert report.artifacts[0].verification.passed
    assert _accuracy(report.artifacts[0].artifact.path, digits_data) >= 0.9


def test_prune_plus_int8_composes(samples: Path, tmp_path: Path, digits_data: dict[str, np.ndarray]) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, preset="prune-50+int8",
                     calibration=samples / "digits.npz", verify_data=samples / "digits.npz")
    assert [a.artifact.target for a in report.artifacts] == ["tflite"]  # int8 has no Core ML recipe
    entry = report.artifacts[0]
    assert entry.artifact.path.name == "digits_cnn.prune-50+int8.tflite"
    assert abs(entry.pruning.achieved_sparsity - 0.5) <= 0.01
    assert TfliteRunner(entry.artifact.path).inputs[0].dtype == "float32"
    assert entry.verification.passed
    assert _accuracy(entry.artifact.path, digits_data) >= 0.9


def test_prune_plus_palettize_composes_for_coreml(samples: Path, tmp_path: Path) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, preset="prune-50+palettize-4",
                     calibration=samples / "digits.npz", verify_data=samples / "digits.npz")
    assert [a.artifact.target for a in report.artifacts] == ["coreml"]
    entry = report.artifacts[0]
    assert entry.verification is not None and entry.verification.passed, entry.verification.failure_line()
    assert abs(entry.pruning.achieved_sparsity - 0.5) <= 0.01


def test_pruning_without_data_warns(samples: Path, tmp_path: Path) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("tflite",), preset="prune-50", verify=False)
    assert any("without fine-tuning" in w for w in report.warnings)
    assert report.artifacts[0].pruning.finetune_epochs == 0
