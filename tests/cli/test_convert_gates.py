"""`convert` is a gate: a failed verification exits 5 and keeps the artifact marked failed; a budget exits 6."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

STRICT = """
[presets.int8-strict]
base = "int8"
description = "int8 judged as if it were fp32: must fail verification"
[presets.int8-strict.tolerance]
cosine_min = 0.999999
"""


def test_failed_verification_exits_5_and_keeps_the_artifact(run_cli: Callable[..., CliResult], samples: Path,
                                                             tmp_path: Path) -> None:
    presets = tmp_path / "presets.toml"
    presets.write_text(STRICT)
    out = tmp_path / "out"
    result = run_cli("convert", samples / "digits_cnn.keras", "--preset", "int8-strict", "--preset-file", presets,
                     "--calibration", samples / "digits.npz", "--data", samples / "digits.npz", "--out", out)
    assert result.code == 5, result.err
    assert (out / "digits_cnn.int8-strict.tflite").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "verification_failed" and report["exit_code"] == 5
    artifact = report["artifacts"][0]
    assert artifact["status"] == "verification_failed"
    assert artifact["verification"]["failure"].startswith("probs: cosine")
    assert "probs: cosine" in result.out


def test_warn_only_keeps_exit_0(run_cli: Callable[..., CliResult], samples: Path, tmp_path: Path) -> None:
    presets = tmp_path / "presets.toml"
    presets.write_text(STRICT)
    result = run_cli("convert", samples / "digits_cnn.keras", "--preset", "int8-strict", "--preset-file", presets,
                     "--calibration", samples / "digits.npz", "--out", tmp_path / "out", "--warn-only")
    assert result.code == 0
    assert "verification_failed" in result.out


def test_size_budget_exits_6(run_cli: Callable[..., CliResult], samples: Path, tmp_path: Path) -> None:
    result = run_cli("convert", samples / "digits_cnn.keras", "--device", "pixel-8", "--calibration",
                     samples / "digits.npz", "--out", tmp_path / "out", "--max-size-kb", "4")
    assert result.code == 6
    assert "over budget: size" in result.out


def test_microcontroller_ram_budget(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    """A model whose activations cannot fit a 256 KiB nRF52840 is refused with --check-budgets."""
    import keras

    inputs = keras.Input((96, 96, 3), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    path = tmp_path / "wide.keras"
    model.save(path)
    result = run_cli("convert", path, "--device", "nrf52840", "--preset", "fp32", "--no-verify",
                     "--out", tmp_path / "out", "--check-budgets")
    assert result.code == 6, result.out + result.err
    assert "RAM" in result.out
