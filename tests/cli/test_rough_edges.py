"""Data and bundle checks that used to let wrong things through, and messages that misled (issue 17, items 7-8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, CliResult

Run = Callable[..., CliResult]


def _last(result: CliResult) -> str:
    assert "Traceback" not in result.err, result.err
    return result.err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> Path:
    """digits_cnn converted for both targets once (no verification) for the artifact-side checks."""
    from tests.support import convert

    out = tmp_path_factory.mktemp("rough") / "out"
    convert(samples / "digits_cnn.keras", out, verify=False)
    return out


def test_labels_outside_the_classes_are_refused(run_cli: Run, tmp_path: Path, samples: Path, converted: Path) -> None:
    with np.load(samples / "digits.npz") as data:
        images, labels = data["test__image"][:32], data["test__labels"][:32]
    bad = tmp_path / "bad_labels.npz"
    np.savez(bad, image=images, labels=labels + 100)
    result = run_cli("verify", converted / "digits_cnn.fp32.tflite", "--reference", samples / "digits_cnn.keras",
                     "--data", bad, "--samples", "32")
    assert result.code == 3
    assert "labels run from 100 to 109, but the model's classifier has 10 classes (labels 0..9)" in _last(result)


def test_bundle_labels_must_match_the_class_count(run_cli: Run, tmp_path: Path, converted: Path) -> None:
    labels = tmp_path / "three.txt"
    labels.write_text("cat\ndog\nbird\n")
    result = run_cli("bundle", converted, "--labels", labels)
    assert result.code == 3 and "--labels gives 3 labels, but digits_cnn.fp32" in _last(result)
    assert "has 10 classes" in _last(result)


def test_a_text_file_given_as_npz_is_not_called_pickled(run_cli: Run, tmp_path: Path, samples: Path,
                                                       converted: Path) -> None:
    text = tmp_path / "data.npz"
    text.write_text("0.1, 0.2, 0.3\n")
    result = run_cli("verify", converted / "digits_cnn.fp32.tflite", "--reference", samples / "digits_cnn.keras",
                     "--data", text)
    assert result.code == 3 and "pickled" not in result.err
    assert "cannot read verification data file data.npz: not an .npz archive (not a zip file" in _last(result)


def test_a_missing_channel_axis_is_reported_with_the_users_shape(run_cli: Run, tmp_path: Path, samples: Path,
                                                                converted: Path) -> None:
    with np.load(samples / "digits.npz") as data:
        images = data["test__image"][..., 0]
    flat = tmp_path / "no_channel.npz"
    np.savez(flat, image=images)
    result = run_cli("verify", converted / "digits_cnn.fp32.tflite", "--reference", samples / "digits_cnn.keras",
                     "--data", flat)
    line = _last(result)
    assert result.code == 3 and "has shape (360, 8, 8), expected Nx8x8x1" in line and "(1, 360" not in line
    assert "x[..., None]" in line


def test_bench_on_a_core_ml_package_says_what_bench_runs(run_cli: Run, converted: Path) -> None:
    result = run_cli("bench", converted / "digits_cnn.fp32.mlpackage")
    line = _last(result)
    assert result.code == 4 and "bench runs TFLite artifacts" in line and "needs macOS" in line
    assert "not found" not in line


@pytest.mark.parametrize("name", ["digits_cnn.fp32.tflite", "digits_cnn.fp32.mlpackage"])
def test_inspect_describes_artifacts(run_cli: Run, converted: Path, name: str) -> None:
    result = run_cli("inspect", converted / name, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    summary = data["summary"]
    assert [spec["shape"] for spec in summary["inputs"]] == [[1, 8, 8, 1]]
    assert [spec["shape"] for spec in summary["outputs"]] == [[1, 10]]
    assert summary["params"] >= 8506 and summary["macs"] > 200_000
    assert data["format"] == ("tflite" if name.endswith(".tflite") else "coreml")


def test_preset_auto_without_device_is_a_usage_error(run_cli: Run, tmp_path: Path, samples: Path) -> None:
    result = run_cli("convert", samples / "digits_cnn.keras", "--preset", "auto", "--out", tmp_path / "out")
    assert result.code == 2 and "--preset auto needs --device" in result.err
    assert not (tmp_path / "out").exists()


def test_seeded_origin_keeps_its_parenthesis_in_the_html(converted: Path, samples: Path, tmp_path: Path) -> None:
    from tests.support import convert

    out = tmp_path / "html"
    convert(samples / "digits_cnn.keras", out, targets=("tflite",), verify_samples=8)
    html = (out / "report.html").read_text()
    assert "8 samples from seeded random inputs (seed 0)<" in html


def test_without_a_terminal_each_finished_stage_is_one_line(tmp_path: Path, samples: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "edgeexport", "convert", str(samples / "digits_mlp.h5"),
                           "--target", "tflite", "--samples", "8", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("  done  ")]
    stages = [line.split("  done  ", 1)[1].rsplit(" (", 1)[0] for line in lines]
    assert stages[0] == "loading digits_mlp.h5"
    assert "converting to tflite (fp32)" in stages and "verifying digits_mlp.fp32.tflite" in stages
    assert all(line.endswith(" s)") for line in lines)


def test_a_multi_input_models_tflite_input_order_is_reported(run_cli: Run, tmp_path: Path) -> None:
    import keras

    first, second = keras.Input((4,), name="alpha"), keras.Input((3,), name="beta")
    joined = keras.layers.Concatenate()([keras.layers.Dense(5)(first), keras.layers.Dense(5)(second)])
    path = tmp_path / "two.keras"
    keras.Model([first, second], keras.layers.Dense(2)(joined)).save(path)
    out = tmp_path / "out"
    result = run_cli("convert", path, "--target", "tflite", "--samples", "8", "--out", out)
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    tflite_order = [spec["name"] for spec in report["artifacts"][0]["inputs"]]
    note = ("two.fp32.tflite takes its inputs in the order beta, alpha (the source model's order is alpha, beta): "
            "feed them by name, not by position")
    assert [name.split(":")[0].removeprefix("serve_") for name in tflite_order] == ["beta", "alpha"]
    assert note in report["notes"]
    assert "takes its inputs in the order beta, alpha" in " ".join(result.out.split())
