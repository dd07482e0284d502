"""Every bad input ends in a one-line error with the right exit code, and leaves nothing half-written."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CliResult

Run = Callable[..., CliResult]


def _one_line_error(result: CliResult) -> str:
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert lines, "no error message"
    assert "Traceback" not in result.err
    assert lines[-1].startswith("error: ")
    return lines[-1]


def test_missing_model_path(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("convert", tmp_path / "nope.keras", "--out", tmp_path / "out")
    assert result.code == 3
    assert "model not found" in _one_line_error(result)


def test_empty_file(run_cli: Run, tmp_path: Path) -> None:
    model = tmp_path / "empty.keras"
    model.write_bytes(b"")
    result = run_cli("convert", model, "--out", tmp_path / "out")
    assert result.code == 3 and "empty" in _one_line_error(result)


def test_truncated_keras_file(run_cli: Run, tmp_path: Path, samples: Path) -> None:
    model = tmp_path / "truncated.keras"
    model.write_bytes((samples / "digits_cnn.keras").read_bytes()[:4000])
    result = run_cli("convert", model, "--out", tmp_path / "out")
    assert result.code == 3
    assert "truncated" in _one_line_error(result) or "corrupt" in _one_line_error(result)


def test_text_file_renamed_keras(run_cli: Run, tmp_path: Path) -> None:
    model = tmp_path / "notes.keras"
    model.write_text("these are my notes, not a model\n")
    result = run_cli("inspect", model)
    assert result.code == 3 and "not a Keras 3 .keras archive" in _one_line_error(result)


def test_unknown_format_names_what_was_expected(run_cli: Run, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"\x80\x02")
    result = run_cli("convert", model)
    assert result.code == 3
    line = _one_line_error(result)
    assert "unknown model format" in line and ".keras" in line and "SavedModel" in line


def test_directory_that_is_not_a_savedmodel(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "readme.txt").write_text("hi")
    result = run_cli("convert", tmp_path / "dir", "--out", tmp_path / "out")
    assert result.code == 3 and "not a TensorFlow SavedModel" in _one_line_error(result)


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    inputs = keras.Input((4,), name="x")
    doubled = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(doubled))
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    model.save(path)
    return path


def test_lambda_layer_is_refused_in_safe_mode(run_cli: Run, lambda_model: Path, tmp_path: Path) -> None:
    result = run_cli("convert", lambda_model, "--out", tmp_path / "out", "--target", "tflite")
    assert result.code == 3
    line = _one_line_error(result)
    assert "Lambda" in line and "--unsafe-deserialization" in line
    assert not (tmp_path / "out" / "lambda.fp32.tflite").exists()


def test_lambda_layer_loads_when_opted_in(run_cli: Run, lambda_model: Path) -> None:
    result = run_cli("inspect", lambda_model, "--unsafe-deserialization")
    assert result.code == 0, result.err
    assert "Lambda" in result.out


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"calibration__image": np.zeros((10, 8, 8, 3), np.float32)}, "expected"),
        ({"calibration__image": np.zeros((10, 8, 8, 1), np.complex64)}, "dtype"),
        ({"calibration__image": np.full((10, 8, 8, 1), np.nan, np.float32)}, "NaN"),
        ({"calibration__pixels": np.zeros((10, 8, 8, 1), np.float32),
          "calibration__mask": np.zeros((10, 8, 8, 1), np.float32)}, "no array for input 'image'"),
    ],
    ids=["wrong-shape", "wrong-dtype", "nan", "wrong-name"],
)
def test_bad_calibration_data(run_cli: Run, samples: Path, tmp_path: Path, arrays: dict[str, np.ndarray],
                              message: str) -> None:
    data = tmp_path / "calib.npz"
    np.savez(data, **arrays)
    out = tmp_path / "out"
    result = run_cli("convert", samples / "digits_cnn.keras", "--target", "tflite", "--preset", "int8",
                     "--calibration", data, "--out", out)
    assert result.code == 3
    assert message in _one_line_error(result)
    assert not out.exists() or not any(out.iterdir()), "output directory is not clean after a failure"


def test_int8_without_calibration_refuses(run_cli: Run, samples: Path, tmp_path: Path) -> None:
    result = run_cli("convert", samples / "digits_cnn.keras", "--target", "tflite", "--preset", "int8",
                     "--out", tmp_path / "out")
    assert result.code == 3
    line = _one_line_error(result)
    assert "calibration" in line and "synthetic" in line


def test_output_directory_that_is_a_file(run_cli: Run, samples: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("a file")
    result = run_cli("convert", samples / "digits_cnn.keras", "--out", target)
    assert result.code == 3 and "not a directory" in _one_line_error(result)


def test_unwritable_output_directory(run_cli: Run, samples: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root may write anywhere a permission bit allows; sysfs refuses new files even to root.
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no sysfs to provide an unwritable directory for root")
        target = Path("/sys/kernel")
    else:
        target = tmp_path / "locked"
        target.mkdir()
        target.chmod(0o500)
    result = run_cli("convert", samples / "digits_cnn.keras", "--out", target)
    assert result.code == 3 and "not writable" in _one_line_error(result)


def test_unknown_preset_and_device(run_cli: Run, samples: Path, tmp_path: Path) -> None:
    preset = run_cli("convert", samples / "digits_cnn.keras", "--preset", "fp17", "--out", tmp_path / "a")
    assert preset.code == 3 and "fp17" in _one_line_error(preset)
    device = run_cli("convert", samples / "digits_cnn.keras", "--device", "pixel-99", "--out", tmp_path / "b")
    assert device.code == 3 and "pixel-99" in _one_line_error(device)


def test_unsupported_op_is_named_and_nothing_is_left_behind(run_cli: Run, tmp_path: Path) -> None:
    import tensorflow as tf

    class Determinant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 3, 3), tf.float32, name="m")])
        def __call__(self, m: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"det": tf.linalg.det(m)}

    model_dir = tmp_path / "det_savedmodel"
    module = Determinant()
    tf.saved_model.save(module, str(model_dir), signatures={"serving_default": module.__call__})
    out = tmp_path / "out"
    result = run_cli("convert", model_dir, "--target", "tflite", "--out", out)
    assert result.code == 4
    line = _one_line_error(result)
    assert "MatrixDeterminant" in line
    assert sorted(p.name for p in out.iterdir()) == [], "a failed conversion left files behind"
    shutil.rmtree(out)
