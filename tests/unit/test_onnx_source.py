"""The ONNX source without TensorFlow: checks, names, shapes, MACs, parameters, pruning and the onnxruntime reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeexport.errors import (
    BadInputError,
    ModelFormatError,
    UnsupportedError,
    UnsupportedOpError,
)
from edgeexport.types import LoadOptions
from tests.conftest import SAMPLES

sys.path.insert(0, str(SAMPLES))
import make_onnx_samples as samples  # noqa: E402


def test_tf_names_are_valid_unique_and_stable() -> None:
    from edgeexport.sources.onnx import tf_name

    taken: set[str] = set()
    assert [tf_name(n, taken) for n in ("input.1", "input_1", "0", "/conv/Relu:0", "x")] == [
        "input_1", "input_1_1", "t_0", "_conv_Relu_0", "x"]


def test_macs_and_params_match_hand_counts() -> None:
    from edgeexport.sources.onnx_summary import count_macs, params

    cnn = samples.build_cnn_residual(12)
    # conv 3->8 and two convs 8->8 (3x3 on 12x12), Gemm 8->10
    assert count_macs(cnn) == 144 * 8 * 27 + 2 * 144 * 8 * 72 + 80
    assert params(cnn) == 8 * 27 + 2 * 8 * 72 + 3 * 4 * 8 + 80 + 10
    block = samples.build_transformer(seq=8, dim=16, hidden=32)
    # q, k, v, out projections; q.k^T and attn.v; the two MLP matmuls
    assert count_macs(block) == 4 * 8 * 16 * 16 + 2 * 8 * 8 * 16 + 2 * 8 * 16 * 32
    mobilenet = samples.build_mobilenet_v2(224)
    assert 3.4e6 < params(mobilenet) < 3.6e6  # MobileNetV2 1.0 has 3.5 M parameters
    assert 2.9e8 < count_macs(mobilenet) < 3.2e8  # and about 300 M MACs at 224x224


def _external(location: str) -> object:
    from onnx import TensorProto
    from onnx.external_data_helper import set_external_data

    model = samples.build_mlp()
    tensor = model.graph.initializer[0]
    set_external_data(tensor, location=location)
    tensor.data_location = TensorProto.EXTERNAL
    return model


@pytest.mark.parametrize("location", ["../w.bin", "sub/../../w.bin", "/tmp/w.bin", "..\\w.bin"])
def test_external_data_must_stay_in_the_directory(tmp_path: Path, location: str) -> None:
    from edgeexport.sources.onnx_checks import check_external_data

    with pytest.raises(BadInputError, match="refusing to read|outside"):
        check_external_data(_external(location), tmp_path / "m.onnx")


def test_external_data_inside_the_directory_is_accepted(tmp_path: Path) -> None:
    from edgeexport.sources.onnx_checks import check_external_data

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"x")
    assert check_external_data(_external("sub/w.bin"), tmp_path / "m.onnx") == [(tmp_path / "sub" / "w.bin").resolve()]
    with pytest.raises(BadInputError, match="'sub/none.bin' is missing"):
        check_external_data(_external("sub/none.bin"), tmp_path / "m.onnx")


def test_opset_bounds() -> None:
    from onnx import helper

    from edgeexport.sources.onnx_checks import MIN_OPSET, check_opset, max_opset

    model = samples.build_mlp()
    assert check_opset(model, "m") == samples.OPSET
    for bad in (MIN_OPSET - 1, max_opset() + 1):
        del model.opset_import[:]
        model.opset_import.append(helper.make_opsetid("", bad))
        with pytest.raises(UnsupportedError, match=f"opset {bad}"):
            check_opset(model, "m")
    del model.opset_import[:]
    with pytest.raises(ModelFormatError, match="truncated"):
        check_opset(model, "m")


def test_unsupported_ops_are_counted() -> None:
    from onnx import helper

    from edgeexport.sources.onnx_checks import check_ops, convertible_ops

    assert {"Conv", "Gemm", "MatMul", "LayerNormalization", "Erf", "Softmax"} <= convertible_ops()
    model = samples.build_mlp()
    model.graph.node.extend([helper.make_node("Swish", ["scores"], ["a"]), helper.make_node("Swish", ["a"], ["b"]),
                             helper.make_node("Magic", ["b"], ["c"], domain="com.example")])
    with pytest.raises(UnsupportedOpError) as info:
        check_ops(model, "m")
    assert info.value.ops == {"Swish": 2, "com.example::Magic": 1}


def test_shapes_resolve_with_overrides() -> None:
    from edgeexport.sources.onnx_checks import fixed_shapes, resolved_shapes

    model = samples.build_dynamic_batch()
    assert resolved_shapes(model, LoadOptions()) == {"x": (None, 3, 8, 8)}
    assert fixed_shapes(model, LoadOptions()) == {"x": (1, 3, 8, 8)}
    with pytest.raises(BadInputError, match="contradicts"):
        resolved_shapes(model, LoadOptions(input_shapes=(("x", (1, 3, 9, 9)),)))
    with pytest.raises(BadInputError, match="has 3 dimensions; the input of the model has 4"):
        resolved_shapes(model, LoadOptions(input_shapes=(("x", (1, 3, 8)),)))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(BadInputError, match="input 'x' has a dynamic dimension"):
        fixed_shapes(model, LoadOptions())
    assert fixed_shapes(model, LoadOptions(input_shapes=(("x", (1, 3, 5, 8)),))) == {"x": (1, 3, 5, 8)}


def _loaded(tmp_path: Path, model: object) -> object:
    import onnx

    from edgeexport.sources import load, open_source

    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return load(open_source(path))


def test_reference_runs_batches_on_fixed_batch_models(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = samples.build_cnn_residual(8)
    loaded = _loaded(tmp_path, model)
    x = np.random.default_rng(0).uniform(size=(3, 3, 8, 8)).astype(np.float32)
    out = loaded.run({"input.1": x})["logits"]  # type: ignore[attr-defined]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"input.1": x[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    spec = loaded.summary.inputs[0]  # type: ignore[attr-defined]
    assert (spec.name, spec.shape, spec.layout) == ("input.1", (1, 3, 8, 8), "NCHW")


def test_magnitude_pruning_zeroes_weights(tmp_path: Path) -> None:
    from onnx import numpy_helper

    from edgeexport.catalog.model import Pruning

    loaded = _loaded(tmp_path, samples.build_cnn_residual(8))
    pruned, report = loaded.pruned(Pruning("magnitude", 0.5))  # type: ignore[attr-defined]
    assert report.layers_pruned == 4 and abs(report.achieved_sparsity - 0.5) < 0.01
    weights = {i.name: numpy_helper.to_array(i) for i in pruned.model.graph.initializer}  # type: ignore[attr-defined]
    conv = next(v for k, v in weights.items() if v.ndim == 4 and v.shape[1] == 8)
    assert abs(float(np.mean(conv == 0)) - 0.5) < 0.01
    with pytest.raises(UnsupportedError, match="channels pruning"):
        loaded.pruned(Pruning("channels", 0.25))  # type: ignore[attr-defined]


def test_digits_onnx_is_the_trained_keras_model() -> None:
    """The sample's weights came from digits_cnn.keras: onnxruntime must reach its recorded test accuracy."""
    import json

    import onnxruntime as ort

    session = ort.InferenceSession(str(SAMPLES / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    with np.load(SAMPLES / "digits_nchw.npz") as data:
        images, labels = data["test__image"], data["test__labels"]
    assert images.shape[1:] == (1, 8, 8)
    probs = session.run(None, {"image": images})[0]
    recorded = json.loads((SAMPLES / "digits_cnn.accuracy.json").read_text())["test_accuracy"]
    assert abs(float(np.mean(probs.argmax(axis=1) == labels)) - recorded) < 0.003
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_layout_matching_and_converter_errors() -> None:
    from edgeexport.errors import ConversionError
    from edgeexport.sources.onnx_convert import _failure, _match, channels_last

    assert channels_last(4) == (0, 2, 3, 1) and channels_last(3) == (0, 2, 1)
    assert _match("x", (1, 3, 8, 6), (1, 8, 6, 3), prefer_permuted=False) == (0, 2, 3, 1)
    assert _match("x", (1, 3, 8, 6), (1, 3, 8, 6), prefer_permuted=True) is None
    # 1x8x8 fits both ways: onnx2tf's own layout flag decides
    assert _match("x", (1, 8, 8), (1, 8, 8), prefer_permuted=True) == (0, 2, 1)
    assert _match("x", (1, 8, 8), (1, 8, 8), prefer_permuted=False) is None
    with pytest.raises(ConversionError, match="cannot map back"):
        _match("x", (1, 3, 8, 6), (1, 144), prefer_permuted=True)
    assert isinstance(_failure(ValueError("OP: Foo is not yet implemented"), ""), UnsupportedOpError)
    exited = _failure(SystemExit(1), "INFO: x\nERROR: The input shape is broken\n")
    assert isinstance(exited, ConversionError) and "The input shape is broken" in exited.message
