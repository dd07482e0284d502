"""Matching reference layers to artifact tensors by name, after fusion (no framework import)."""

from __future__ import annotations

from edgeexport.verify.layer_match import ArtifactTensor, layout_axes, layout_candidates, match_layers, mentioned_layers


def _t(key: str, name: str, op: str, inputs: tuple[str, ...], shape: tuple[int, ...]) -> ArtifactTensor:
    return ArtifactTensor(key, name, op, inputs, shape)


def test_scopes_are_the_leftmost_layer_with_its_call_suffix() -> None:
    layers = ["re_lu", "re_lu_1", "se_conv", "se_conv_1", "add", "activation", "activation_1"]
    names = ["M_1/re_lu_1/Relu", "M_1/re_lu_1_2/Relu6", "M_1/se_conv_1/convolution", "M_1/se_conv_1_2/convolution",
             "StatefulPartitionedCall_M_1_activation_1_2_add_cast_fp16"]
    assert mentioned_layers(names, layers) == [{"re_lu"}, {"re_lu_1"}, {"se_conv"}, {"se_conv_1"}, {"activation_1"}]
    # Without Keras-3 call suffixes anywhere, bare names are used.
    assert mentioned_layers(["model/conv1/Relu"], ["conv1"]) == [{"conv1"}]


def test_a_fused_tensor_is_compared_with_the_last_layer_of_its_group() -> None:
    layers = [("conv", (8, 8, 4)), ("bn", (8, 8, 4)), ("relu", (8, 8, 4)), ("head", (10,))]
    tensors = [
        _t("1", "M_1/relu_1/Relu;M_1/bn_1/FusedBatchNormV3;M_1/conv_1/Conv2D", "CONV_2D", ("0",), (1, 8, 8, 4)),
        _t("2", "M_1/head_1/MatMul", "FULLY_CONNECTED", ("1",), (1, 10)),
        _t("3", "StatefulPartitionedCall:0", "SOFTMAX", ("2",), (1, 10)),
    ]
    matches, unmapped = match_layers(layers, tensors, activated=frozenset({"head"}))
    assert [(m.layer, m.tensor.key, m.fused) for m in matches] == [("relu", "1", ("conv", "bn")), ("head", "3", ())]
    assert unmapped == []
    # A softmax that belongs to a following Activation layer is not the Dense layer's output.
    matches, unmapped = match_layers(layers, tensors)
    assert [(m.layer, m.tensor.key) for m in matches] == [("relu", "1"), ("head", "2")]


def test_batchnorm_folded_into_conv_weights() -> None:
    layers = [("conv", (4, 4, 2)), ("conv_bn", (4, 4, 2)), ("act", (4, 4, 2))]
    tensors = [_t("1", "M_1/conv_1/convolution", "CONV_2D", ("0",), (1, 4, 4, 2)),
               _t("2", "M_1/act_1/HardSwish", "HARD_SWISH", ("1",), (1, 4, 4, 2))]
    matches, _ = match_layers(layers, tensors, folds={"conv": "conv_bn"})
    assert [(m.layer, m.fused) for m in matches] == [("conv_bn", ("conv",)), ("act", ())]


def test_layouts() -> None:
    assert layout_axes((8, 8, 16), (16, 8, 8)) == (0, 3, 1, 2)
    assert layout_axes((16, 8, 8), (8, 8, 16)) == (0, 2, 3, 1)
    assert layout_axes((10,), (11,)) is None
    assert len(layout_candidates((16, 16, 16), (16, 16, 16))) == 3
    assert layout_axes((16, 16, 16), (16, 16, 16), prefer=(0, 3, 1, 2)) == (0, 3, 1, 2)
