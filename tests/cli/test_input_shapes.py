"""``--input-shape`` through the CLI: the batch it gives is the artifact's batch, an unknown name is a usage error
(exit 2, naming the inputs there are), a shape that contradicts a static model is bad input (exit 3), never a
traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import SAMPLES, CliResult

Cli = Callable[..., CliResult]


def _expect(result: CliResult, code: int, *fragments: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    text = result.err + result.out
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_unknown_input_name_is_a_usage_error_naming_the_inputs(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("convert", SAMPLES / "digits_cnn.onnx", "--input-shape", "img=4,1,8,8", "--out", tmp_path / "o")
    _expect(result, 2, "--input-shape names no input", "img", "image")
    result = run_cli("inspect", SAMPLES / "digits_cnn.keras", "--input-shape", "img=4,8,8,1")
    _expect(result, 2, "img", "its inputs: image")


def test_shape_contradicting_a_static_model_is_bad_input(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("inspect", SAMPLES / "digits_cnn.onnx", "--input-shape", "image=1,1,9,9")
    _expect(result, 3, "contradicts the fixed shape", "?x1x8x8")
    result = run_cli("inspect", SAMPLES / "digits_cnn.keras", "--input-shape", "image=2,8,8")
    _expect(result, 3, "has 3 dimensions")


def test_batch_given_is_the_artifact_batch(run_cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "b4"
    result = run_cli("convert", SAMPLES / "digits_cnn.keras", "--target", "tflite", "--input-shape", "image=4,8,8,1",
                     "--data", SAMPLES / "digits.npz", "--out", out, "--json")
    _expect(result, 0)
    report = json.loads((out / "report.json").read_text())
    shapes = [tuple(i["shape"]) for i in report["artifacts"][0]["inputs"]]
    assert shapes == [(4, 8, 8, 1)], shapes
    assert report["artifacts"][0]["verification"]["status"] == "ok"
