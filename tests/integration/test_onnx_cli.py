"""ONNX through the CLI: a real conversion of the digits CNN, and every bad input with its exit code and message.

The bad-input cases fail while loading (before TensorFlow is imported), so they are fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLES, CliResult

Cli = Callable[..., CliResult]


def _tiny_model(opset: int = 17, *, input_shape: list[int | str] | None = None, op: str = "Relu",
                domain: str = "", extra_opsets: tuple[tuple[str, int], ...] = ()) -> object:
    """x [1,3,4,4] -> Conv(weights w) -> op -> y."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(2, 3, 1, 1)).astype(np.float32), "w")
    shape = input_shape or [1, 3, 4, 4]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node(op, ["c"], ["y"], domain=domain)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], 2, *shape[2:]])], [w])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _save_with_external(model: object, directory: Path, location: str) -> Path:
    """Mark the weight ``w`` as stored in ``location`` (relative to the model) without writing that file."""
    from onnx import TensorProto, save
    from onnx.external_data_helper import set_external_data

    tensor = model.graph.initializer[0]  # type: ignore[attr-defined]
    set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data) or 24)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    path = directory / "model.onnx"
    save(model, path)
    return path


def _expect(result: CliResult, code: int, *fragments: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    text = result.err + result.out
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_inspect_digits_onnx(run_cli: Cli) -> None:
    result = run_cli("inspect", SAMPLES / "digits_cnn.onnx", "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["summary"]
    assert summary["inputs"][0]["name"] == "image" and summary["inputs"][0]["layout"] == "NCHW"
    assert summary["params"] == 8506  # the same weights as digits_cnn.keras
    # conv1 1x8x8x16x9 + conv2 16x8x8x16x9 + conv3 16x4x4x32x9 + fc 32x32 + 32x10 MACs
    assert summary["macs"] == 9216 + 147456 + 73728 + 1024 + 320


def test_convert_digits_onnx_both_targets(run_cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("convert", SAMPLES / "digits_cnn.onnx", "--target", "tflite", "--target", "coreml",
                     "--preset", "fp32", "--data", SAMPLES / "digits_nchw.npz", "--samples", "32", "--out", out, "--json")
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    artifacts = {Path(a["path"]).suffix: a for a in report["artifacts"]}
    assert set(artifacts) == {".tflite", ".mlpackage"}
    for entry in artifacts.values():
        assert entry["permutations"] == [{"kind": "input", "tensor": "image", "axes": [0, 2, 3, 1]}]
    tflite = next(a for a in report["artifacts"] if a["path"].endswith(".tflite"))
    assert tflite["inputs"][0]["shape"] == [1, 8, 8, 1]
    assert tflite["verification"]["passed"] is True


def test_int8_with_nchw_calibration_through_cli(tmp_path: Path) -> None:
    """Run in a child process: calibration data in the wrong layout once crashed the TFLite calibrator (SIGFPE),
    which would take pytest down with it. The pipeline now permutes it to the artifact's layout."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "edgeexport", "convert", str(SAMPLES / "digits_cnn.onnx"), "--target", "tflite",
         "--preset", "int8", "--calibration", str(SAMPLES / "digits_nchw.npz"), "--data", str(SAMPLES / "digits_nchw.npz"),
         "--samples", "64", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["artifacts"][0]["verification"]["passed"] is True


def test_refuses_traversing_external_data(run_cli: Cli, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 24)
    path = _save_with_external(_tiny_model(), model_dir, "../secret.bin")
    _expect(run_cli("convert", path, "--out", tmp_path / "out"), 3, "'../secret.bin'", "outside the model's directory")


def test_refuses_absolute_external_data(run_cli: Cli, tmp_path: Path) -> None:
    path = _save_with_external(_tiny_model(), tmp_path, "/etc/hostname")
    _expect(run_cli("inspect", path), 3, "'/etc/hostname'", "absolute path")


def test_refuses_symlink_out_of_the_directory(run_cli: Cli, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"\0" * 24)
    (model_dir / "weights.bin").symlink_to(outside)
    path = _save_with_external(_tiny_model(), model_dir, "weights.bin")
    _expect(run_cli("inspect", path), 3, "'weights.bin'", "outside the model's directory")


def test_missing_side_file_is_named(run_cli: Cli, tmp_path: Path) -> None:
    path = _save_with_external(_tiny_model(), tmp_path, "weights.bin")
    _expect(run_cli("convert", path, "--out", tmp_path / "out"), 3, "external data file 'weights.bin' is missing")


def test_external_data_next_to_the_model_loads(run_cli: Cli, tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "model.onnx"
    onnx.save_model(_tiny_model(), path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()
    result = run_cli("inspect", path, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["summary"]["params"] == 6


def test_unsupported_ops_are_listed(run_cli: Cli, tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    model = _tiny_model(24, op="Swish")  # a standard op (opset 24) onnx2tf 2.6.9 has no converter for
    model.graph.node.append(helper.make_node("Frobnicate", ["y"], ["z"], domain="com.example"))  # type: ignore[attr-defined]
    model.graph.node.append(helper.make_node("Swish", ["z"], ["z2"]))  # type: ignore[attr-defined]
    model.opset_import.append(helper.make_opsetid("com.example", 1))  # type: ignore[attr-defined]
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    _expect(run_cli("convert", path, "--out", tmp_path / "out"), 4, "Swish x2", "com.example::Frobnicate")


def test_truncated_file(run_cli: Cli, tmp_path: Path) -> None:
    data = (SAMPLES / "digits_cnn.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    _expect(run_cli("convert", path, "--out", tmp_path / "out"), 3, "cut.onnx", "truncated")


@pytest.mark.parametrize("opset", [5, 99])
def test_unsupported_opset(run_cli: Cli, tmp_path: Path, opset: int) -> None:
    import onnx

    path = tmp_path / f"opset{opset}.onnx"
    onnx.save(_tiny_model(opset), path)
    _expect(run_cli("convert", path, "--out", tmp_path / "out"), 4, f"opset {opset}", "converts opsets 7 to")


def test_dynamic_spatial_dims_need_input_shape(run_cli: Cli, tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "dyn.onnx"
    onnx.save(_tiny_model(input_shape=["N", 3, "H", "W"]), path)
    _expect(run_cli("convert", path, "--out", tmp_path / "out"), 3, "input 'x'", "--input-shape x=1,3,1,1")
    result = run_cli("inspect", path, "--input-shape", "x=1,3,16,16", "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["summary"]
    assert summary["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert summary["macs"] == 2 * 3 * 16 * 16
    _expect(run_cli("inspect", path, "--input-shape", "image=1,3,16,16"), 2, "names no input", "inputs: x")


def test_keep_layout_flag_keeps_nchw(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("convert", SAMPLES / "digits_cnn.onnx", "--target", "tflite", "--preset", "fp32", "--keep-layout",
                     "--samples", "8", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    artifact = json.loads((tmp_path / "report.json").read_text())["artifacts"][0]
    assert artifact["permutations"] == []
    assert artifact["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert artifact["verification"]["passed"] is True
