"""`edgeexport distill`: bad students and outputs are exit 3 with one line; the digits CNN distils into a student
with under a quarter of its parameters within 3 accuracy points, deterministically, and the result converts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult


def _student(path: Path, classes: int = 10, width: int = 8) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    keras.Model(x, keras.layers.Dense(classes, activation="softmax", name="probs")(h)).save(path)
    return path


def test_a_student_with_other_outputs_is_exit_3(run_cli: Callable[..., CliResult], samples: Path,
                                                tmp_path: Path) -> None:
    bad = _student(tmp_path / "five.keras", classes=5)
    result = run_cli("distill", samples / "digits_cnn.keras", "--student", bad, "--data", samples / "digits.npz",
                     "--out", tmp_path / "out.keras")
    assert result.code == 3
    assert "student five.keras output 0 has shape (N, 5), the teacher's is (N, 10)" in result.err
    assert "Traceback" not in result.err and not (tmp_path / "out.keras").exists()


def test_a_student_with_other_inputs_is_exit_3(run_cli: Callable[..., CliResult], samples: Path,
                                               tmp_path: Path) -> None:
    result = run_cli("distill", samples / "digits_cnn.keras", "--student", samples / "digits_mlp.h5",
                     "--data", samples / "digits.npz", "--out", tmp_path / "out.keras")
    assert result.code == 3 and "input 0 has shape (N, 64), the teacher's is (N, 8, 8, 1)" in result.err


def test_out_must_be_a_keras_file_and_teacher_keras(run_cli: Callable[..., CliResult], samples: Path,
                                                    tmp_path: Path) -> None:
    student = _student(tmp_path / "s.keras")
    result = run_cli("distill", samples / "digits_cnn.keras", "--student", student, "--data", samples / "digits.npz",
                     "--out", tmp_path / "out.h5")
    assert result.code == 3 and "--out must name a .keras file" in result.err
    result = run_cli("distill", samples / "digits_cnn.onnx", "--student", student, "--data", samples / "digits.npz",
                     "--out", tmp_path / "out.keras")
    assert result.code == 4 and "distill trains Keras models" in result.err


@pytest.mark.slow
def test_digits_student_ends_within_3_points_deterministically(run_cli: Callable[..., CliResult], samples: Path,
                                                               tmp_path: Path) -> None:
    import json

    import keras

    from tests.support import convert
    from edgeexport.compress.distill import weights_sha256

    student = _student(tmp_path / "student.keras")
    teacher_params = keras.saving.load_model(samples / "digits_cnn.keras", compile=False).count_params()
    assert keras.saving.load_model(student, compile=False).count_params() <= teacher_params / 4
    hashes = []
    for run in ("a", "b"):
        out = tmp_path / run / "student-distilled.keras"
        result = run_cli("distill", samples / "digits_cnn.keras", "--student", student, "--data",
                         samples / "digits.npz", "--out", out, "--device", "pixel-8", "--json")
        assert result.code == 0, result.err
        summary = json.loads(result.out)
        assert "epoch 1/300" in result.err  # plain progress lines off a terminal
        assert summary["eval_split"] == "test" and summary["eval_samples"] == 360
        assert summary["teacher"]["accuracy"] - summary["student"]["accuracy"] <= 0.03
        assert summary["result"]["epochs_run"] < 300  # early stopping ended it
        assert summary["student"]["latency_ms"] > 0 and summary["teacher"]["latency_ms"] > 0
        assert summary["student"]["params"] <= teacher_params / 4
        hashes.append(summary["weights_sha256"])
        assert weights_sha256(keras.saving.load_model(out, compile=False)) == summary["weights_sha256"]
    assert hashes[0] == hashes[1]
    report = convert(tmp_path / "a" / "student-distilled.keras", tmp_path / "converted", targets=("tflite",),
                     preset="int8", calibration=samples / "digits.npz", verify_data=samples / "digits.npz")
    assert report.artifacts[0].verification is not None and report.artifacts[0].verification.passed


def test_distill_student_mixes_labels_in_and_repeats_itself(samples: Path) -> None:
    import keras
    import numpy as np

    from edgeexport.compress.distill import DistillConfig, DistillResult, distill_student, weights_sha256

    teacher = keras.saving.load_model(samples / "digits_mlp.h5", compile=False)
    with np.load(samples / "digits.npz") as data:
        pixels, labels = data["test__image"][:96].reshape(-1, 64), data["test__labels"][:96]

    def run() -> tuple[str, DistillResult]:
        keras.utils.set_random_seed(1)
        x = keras.Input((64,), name="pixels")
        student = keras.Model(x, keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(8)(x)))
        result = distill_student(student, teacher, {"pixels": pixels}, ("pixels",), labels=labels,
                                 config=DistillConfig(epochs=4, patience=2))
        return weights_sha256(student), result

    first, result = run()
    second, _ = run()
    assert first == second
    assert result.losses == ("probs",)
    assert result.train_samples + result.holdout_samples == 96
    assert 1 <= result.best_epoch <= result.epochs_run <= 4
    assert result.history[-1][0] < result.history[0][0]
