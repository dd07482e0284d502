"""Magnitude pruning of a SavedModel source: weights of a fresh copy are masked; other methods are refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.support import convert
from edgeexport.runtimes.tflite import TfliteRunner
from tests.conftest import CliResult


def test_savedmodel_prune_50_zeroes_half_the_weights(samples: Path, tmp_path: Path) -> None:
    report = convert(samples / "digits_mlp_savedmodel", tmp_path, targets=("tflite",), preset="prune-50",
                     verify=False, finetune_epochs=0)
    entry = report.artifacts[0]
    assert entry.pruning is not None and abs(entry.pruning.achieved_sparsity - 0.5) <= 0.01
    assert entry.pruning.layers_pruned == 2  # the two Dense kernels; biases are untouched
    assert any("not fine-tuned" in note for note in report.notes)
    assert any("without fine-tuning" in w and "--calibration" not in w for w in report.warnings)
    runner = TfliteRunner(entry.artifact.path)
    pixels = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    out = next(iter(runner.run({runner.inputs[0].name: pixels}).values()))
    assert out.shape == (4, 10) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_savedmodel_refuses_structured_pruning(run_cli: Callable[..., CliResult], samples: Path,
                                               tmp_path: Path) -> None:
    result = run_cli("convert", samples / "digits_mlp_savedmodel", "--preset", "prune-2:4", "--out", tmp_path)
    assert result.code == 4 and "not supported for SavedModel sources" in result.err
