"""End-to-end conversions of the shipped samples with the real converters and runtimes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support import convert
from edgeexport.runtimes.tflite import TfliteRunner


@pytest.fixture(scope="module")
def keras_digits(samples: Path) -> object:
    import keras

    return keras.saving.load_model(samples / "digits_cnn.keras", compile=False)


@pytest.fixture(scope="module")
def fp32_report(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    out = tmp_path_factory.mktemp("fp32")
    return convert(samples / "digits_cnn.keras", out, targets=("tflite", "coreml"), preset="fp32",
                   verify_data=samples / "digits.npz")


def test_fp32_both_targets_are_written_with_a_versioned_report(fp32_report: object) -> None:
    out = fp32_report.out_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == ["digits_cnn.fp32.mlpackage", "digits_cnn.fp32.tflite", "report.html", "report.json"]
    data = json.loads((out / "report.json").read_text())
    assert data["schema_version"] == "2.0"
    assert data["status"] == "ok" and data["exit_code"] == 0
    assert data["source"]["format"] == "keras" and len(data["source"]["sha256"]) == 64
    assert data["source"]["summary"]["params"] == 8506
    by_target = {a["target"]: a for a in data["artifacts"]}
    tflite = by_target["tflite"]
    assert tflite["size_bytes"] == (out / "digits_cnn.fp32.tflite").stat().st_size
    assert 0 < tflite["gzip_bytes"] < tflite["size_bytes"]
    assert tflite["conversion_seconds"] > 0
    assert by_target["coreml"]["size_bytes"] > 0
    assert not list(out.glob(".edgeexport-*")), "temporary work directory left behind"


def test_fp32_tflite_matches_keras_on_real_digits(fp32_report: object, keras_digits: object,
                                                  digits_data: dict[str, np.ndarray]) -> None:
    images = digits_data["test__image"][:100]
    expected = keras_digits.predict(images, verbose=0)
    got = TfliteRunner(fp32_report.out_dir / "digits_cnn.fp32.tflite").run({"image": images})["probs"]
    assert got.shape == (100, 10)
    assert np.max(np.abs(got - expected)) < 1e-5


def test_int8_accuracy_within_two_points_of_keras(samples: Path, tmp_path: Path, keras_digits: object,
                                                  digits_data: dict[str, np.ndarray]) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("tflite",), preset="int8",
                     calibration=samples / "digits.npz", verify=False)
    artifact = report.artifacts[0].artifact
    runner = TfliteRunner(artifact.path)
    images, labels = digits_data["test__image"], digits_data["test__labels"]
    assert runner.inputs[0].dtype == "float32"  # int8 keeps float I/O
    keras_accuracy = float(np.mean(np.argmax(keras_digits.predict(images, verbose=0), axis=1) == labels))
    int8_accuracy = float(np.mean(np.argmax(runner.run({"image": images})["probs"], axis=1) == labels))
    assert keras_accuracy > 0.9
    assert abs(int8_accuracy - keras_accuracy) <= 0.02, (int8_accuracy, keras_accuracy)
    fp32_size = 8506 * 4
    assert artifact.size_bytes < fp32_size  # int8 weights: about a quarter of fp32, plus graph overhead


def test_fp16_and_dynamic_int8_shrink_the_file_and_stay_close(samples: Path, tmp_path: Path,
                                                             keras_digits: object,
                                                             digits_data: dict[str, np.ndarray]) -> None:
    images = digits_data["test__image"][:64]
    expected = keras_digits.predict(images, verbose=0)
    sizes = {}
    # Bounds on softmax probabilities (0..1); dynamic-int8 rounds weights to 256 levels per channel.
    for preset, bound in (("fp32", 1e-5), ("fp16", 5e-3), ("dynamic-int8", 0.1)):
        report = convert(samples / "digits_cnn.keras", tmp_path / preset, targets=("tflite",), preset=preset,
                         verify=False)
        artifact = report.artifacts[0].artifact
        got = TfliteRunner(artifact.path).run({"image": images})["probs"]
        assert np.max(np.abs(got - expected)) < bound, preset
        assert np.mean(np.argmax(got, axis=1) == np.argmax(expected, axis=1)) >= 0.95, preset
        sizes[preset] = artifact.size_bytes
    assert sizes["fp16"] < sizes["fp32"] and sizes["dynamic-int8"] < sizes["fp16"]


def test_same_inputs_give_byte_identical_artifacts(samples: Path, tmp_path: Path) -> None:
    hashes = []
    for run in ("a", "b"):
        report = convert(samples / "digits_cnn.keras", tmp_path / run, targets=("tflite",), preset="int8",
                         calibration=samples / "digits.npz", verify=False)
        hashes.append([(a.artifact.path.name, a.artifact.sha256) for a in report.artifacts])
    assert hashes[0] == hashes[1]
    first = (tmp_path / "a" / "digits_cnn.int8.tflite").read_bytes()
    assert first == (tmp_path / "b" / "digits_cnn.int8.tflite").read_bytes()


def test_coreml_packages_are_byte_identical_too(samples: Path, tmp_path: Path) -> None:
    shas = [
        convert(samples / "digits_cnn.keras", tmp_path / run, targets=("coreml",), preset="fp16", verify=False)
        .artifacts[0].artifact.sha256
        for run in ("a", "b")
    ]
    assert shas[0] == shas[1]


@pytest.mark.parametrize("name", ["digits_mlp.h5", "digits_mlp_savedmodel"])
def test_h5_and_savedmodel_sources_convert_to_both_targets(samples: Path, tmp_path: Path, name: str,
                                                           digits_data: dict[str, np.ndarray]) -> None:
    import keras

    report = convert(samples / name, tmp_path, targets=("tflite", "coreml"), preset="fp32", verify=False)
    assert report.source.format == ("h5" if name.endswith(".h5") else "savedmodel")
    pixels = digits_data["test__image"][:32].reshape(32, 64)
    reference = keras.saving.load_model(samples / "digits_mlp.h5", compile=False).predict(pixels, verbose=0)
    tflite = next(a.artifact for a in report.artifacts if a.artifact.target == "tflite")
    runner = TfliteRunner(tflite.path)
    got = next(iter(runner.run({runner.inputs[0].name: pixels}).values()))
    assert np.max(np.abs(got - reference)) < 1e-5
    assert {a.artifact.target for a in report.artifacts} == {"tflite", "coreml"}


def test_synthetic_calibration_is_written_as_a_warning(samples: Path, tmp_path: Path) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("tflite",), preset="int8",
                     calibration="synthetic", verify=False)
    data = json.loads((tmp_path / "report.json").read_text())
    assert any("synthetic" in w for w in data["warnings"])
    assert report.artifacts[0].artifact.size_bytes > 0
