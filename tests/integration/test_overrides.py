"""Per-layer preset overrides keep named layers in float, in TFLite and in Core ML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.support import convert
from edgeexport.runtimes.tflite import TfliteRunner
from tests.conftest import CliResult

PRESETS = """
[presets.int8-keep-conv1]
base = "int8"
description = "int8 with the first convolution kept in float"
[[presets.int8-keep-conv1.overrides]]
name = "conv1"
keep = "fp32"

[presets.int8-keep-softmax]
base = "int8"
description = "int8 with every softmax kept in float"
[[presets.int8-keep-softmax.overrides]]
op_type = "Softmax"
keep = "fp32"

[presets.int8-io-keep-conv1]
base = "int8-io"
description = "int8 I/O cannot keep the input layer in float"
[[presets.int8-io-keep-conv1.overrides]]
name = "conv1"
keep = "fp32"

[presets.int8-keep-nothing]
base = "int8"
description = "names a layer the model does not have"
[[presets.int8-keep-nothing.overrides]]
name = "no_such_layer"
keep = "fp32"

[presets.fp16-keep-conv1]
base = "fp16"
description = "Core ML fp16 with the first convolution computed in fp32"
[[presets.fp16-keep-conv1.overrides]]
name = "conv1"
keep = "fp32"
"""


@pytest.fixture(scope="module")
def preset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("presets") / "presets.toml"
    path.write_text(PRESETS)
    return path


def _op_output_dtypes(path: Path) -> list[tuple[str, str]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return [
        (op["op_name"], np.dtype(interpreter._get_tensor_details(op["outputs"][0], 0)["dtype"]).name)
        for op in interpreter._get_ops_details()
    ]


def test_int8_keeps_the_named_layer_in_float(samples: Path, tmp_path: Path, preset_file: Path,
                                             digits_data: dict[str, np.ndarray]) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("tflite",), preset="int8-keep-conv1",
                     calibration=samples / "digits.npz", preset_files=(preset_file,), verify=False)
    ops = _op_output_dtypes(report.artifacts[0].artifact.path)
    convs = [dtype for op, dtype in ops if op == "CONV_2D"]
    assert convs == ["float32", "int8", "int8"], ops
    images, labels = digits_data["test__image"], digits_data["test__labels"]
    probs = TfliteRunner(report.artifacts[0].artifact.path).run({"image": images})["probs"]
    assert np.mean(np.argmax(probs, axis=1) == labels) > 0.9


def test_op_type_override(samples: Path, tmp_path: Path, preset_file: Path) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("tflite",), preset="int8-keep-softmax",
                     calibration=samples / "digits.npz", preset_files=(preset_file,), verify=False)
    ops = dict(_op_output_dtypes(report.artifacts[0].artifact.path))
    assert ops["SOFTMAX"] == "float32" and ops["FULLY_CONNECTED"] == "int8"


def test_int8_io_cannot_keep_the_input_layer_in_float(run_cli: Callable[..., CliResult], samples: Path,
                                                      tmp_path: Path, preset_file: Path) -> None:
    result = run_cli("convert", samples / "digits_cnn.keras", "--target", "tflite", "--preset", "int8-io-keep-conv1",
                     "--preset-file", preset_file, "--calibration", samples / "digits.npz", "--out", tmp_path)
    assert result.code == 4
    assert "int8 inputs/outputs" in result.err and "Traceback" not in result.err


def test_override_naming_no_layer_is_bad_input(run_cli: Callable[..., CliResult], samples: Path, tmp_path: Path,
                                               preset_file: Path) -> None:
    result = run_cli("convert", samples / "digits_cnn.keras", "--target", "tflite", "--preset", "int8-keep-nothing",
                     "--preset-file", preset_file, "--calibration", samples / "digits.npz", "--out", tmp_path)
    assert result.code == 3 and "no_such_layer" in result.err


def test_coreml_fp16_keeps_the_named_layer_in_fp32(samples: Path, tmp_path: Path, preset_file: Path) -> None:
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load
    from coremltools.converters.mil.mil import types

    report = convert(samples / "digits_cnn.keras", tmp_path, targets=("coreml",), preset="fp16-keep-conv1",
                     preset_files=(preset_file,), verify=False)
    model = ct.models.MLModel(str(report.artifacts[0].artifact.path), skip_model_load=True)
    spec = model.get_spec()
    program = load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
    convs = [op for op in program.functions["main"].operations if op.op_type == "conv"]
    assert len(convs) == 3
    dtypes = {("conv1" in op.name): op.outputs[0].dtype for op in convs}
    assert dtypes[True] == types.fp32 and dtypes[False] == types.fp16


def test_coreml_w8_keeps_a_layer_that_coremltools_renamed(samples: Path, tmp_path: Path) -> None:
    """coremltools rebuilds conv3 (followed by a layout transpose) as ``conv_0_cast_fp16``: an override naming
    conv3 must still keep its weights uncompressed (it matched nothing before, silently), and only its weights."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    presets = tmp_path / "presets.toml"
    presets.write_text('[presets.w8-keep-conv3]\nbase = "w8"\ndescription = "w8, conv3 uncompressed"\n'
                       '[[presets.w8-keep-conv3.overrides]]\nname = "conv3"\nkeep = "fp16"\n')
    report = convert(samples / "digits_cnn.keras", tmp_path / "out", targets=("coreml",), preset="w8-keep-conv3",
                     preset_files=(presets,), verify=False)
    model = ct.models.MLModel(str(report.artifacts[0].artifact.path), skip_model_load=True)
    spec = model.get_spec()
    program = load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
    convs = [op for op in program.functions["main"].operations if op.op_type == "conv"]
    compressed = {op.name: op.inputs["weight"].op.op_type.startswith("constexpr") for op in convs}
    assert len(compressed) == 3, compressed
    assert sum(compressed.values()) == 1, compressed  # conv2's weights are quantized, conv1's are too small
    (conv3,) = [op for op in convs if any("conv3" in n for n in (op.name, op.inputs["strides"].name))]
    assert not compressed[conv3.name], compressed
