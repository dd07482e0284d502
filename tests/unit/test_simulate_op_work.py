"""Every op our converters emit has a work model, checked against a hand count (issue 12, item 6).

The op lists are what the artifacts of the tested architectures contain (CNNs, MobileNets, the GELU
Transformer block, unrolled LSTM/GRU, Conv1D, Conv2DTranspose + UpSampling2D, the ONNX digits model),
read with ``edgeexport.simulate`` from ``edgeexport convert`` outputs (fp32/int8 TFLite, fp16 Core ML).
No TensorFlow here: ops are built from ``Tensor`` objects through the readers' own ``_make_op``.
"""

from __future__ import annotations

import math

import pytest

from edgeexport.simulate.graph import Tensor
from edgeexport.simulate.ops import mil_family, not_costed, tflite_family, work_model, work_of
from edgeexport.simulate.tflite_reader import _make_op

# op types seen in the artifacts (see the module docstring), plus the keras.applications CNNs' extras
TFLITE_EMITTED = str.split(
    "ADD AVERAGE_POOL_2D BATCH_MATMUL CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEQUANTIZE FULLY_CONNECTED GATHER "
    "GELU HARD_SWISH LESS LOGISTIC MAX_POOL_2D MEAN MUL NEG NOT_EQUAL PACK QUANTIZE RELU RELU6 RESHAPE REVERSE_V2 "
    "RSQRT SELECT SELECT_V2 SOFTMAX SPLIT SQUARED_DIFFERENCE STRIDED_SLICE SUB TANH TILE TRANSPOSE TRANSPOSE_CONV "
    "UNPACK PAD EXPAND_DIMS SQUEEZE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR MAXIMUM MINIMUM"
)
MIL_EMITTED = str.split(
    "add avg_pool cast concat conv conv_transpose crop erf expand_dims gather less linear matmul max_pool mul "
    "not_equal pad reduce_mean relu relu6 reshape reverse rsqrt select sigmoid silu slice_by_index softmax split "
    "square squeeze stack sub tanh tile transpose"
)


def _t(i: int, shape: tuple[int, ...], dtype: str = "float32", constant: bool = False) -> Tensor:
    size = {"float32": 4, "float16": 2, "int8": 1, "int32": 4}[dtype]
    return Tensor(i, f"t{i}", shape, dtype, constant, math.prod(shape) * size)


@pytest.mark.parametrize("op_type", TFLITE_EMITTED)
def test_every_emitted_tflite_op_has_a_work_model(op_type: str) -> None:
    assert work_model(tflite_family(op_type), op_type) is not None, op_type


@pytest.mark.parametrize("op_type", MIL_EMITTED)
def test_every_emitted_mil_op_has_a_work_model(op_type: str) -> None:
    assert work_model(mil_family(op_type), op_type) is not None, op_type


def test_unknown_ops_are_not_costed() -> None:
    assert not_costed(tflite_family("CUSTOM:Foo"), "CUSTOM:Foo", 0)
    assert not_costed(mil_family("non_maximum_suppression"), "non_maximum_suppression", 0)
    assert not_costed("conv", "CONV_2D", 0)  # a MAC op whose filter was not found is a guess too
    assert not not_costed("conv", "CONV_2D", 10)
    assert not not_costed("reshape", "RESHAPE", 0)  # a view: zero work is its true cost


def test_transpose_conv_counts_the_scatter_from_every_input_element() -> None:
    # LiteRT TRANSPOSE_CONV inputs: int32 output shape, filter [Cout, Kh, Kw, Cin], input, bias.
    # 8x8x16 input, 3x3 kernel, 8 output channels, stride 2: every input element feeds 3*3*8 outputs.
    tensors = [_t(0, (4,), "int32", True), _t(1, (8, 3, 3, 16), constant=True), _t(2, (1, 8, 8, 16)),
               _t(3, (8,), constant=True), _t(4, (1, 16, 16, 8))]
    op = _make_op(0, "TRANSPOSE_CONV", (0, 1, 2, 3), (4,), tensors, None)
    assert op.macs == 8 * 8 * 16 * 3 * 3 * 8 == 73_728
    # MIL conv_transpose weight [Cin, Cout/groups, Kh, Kw]
    x, w, y = _t(0, (1, 16, 8, 8)), _t(1, (16, 8, 3, 3), constant=True), _t(2, (1, 8, 16, 16))
    assert work_of("conv", "conv_transpose", [x], [w], [y], layout="mil")[0] == 73_728


def test_tile_and_other_copies_cost_one_operation_per_element_written() -> None:
    # UpSampling2D(2) on 16x16x8 lowers to RESHAPE, TILE, RESHAPE, TILE, RESHAPE in LiteRT
    tensors = [_t(0, (1, 16, 1, 16, 8)), _t(1, (5,), "int32", True), _t(2, (1, 16, 2, 16, 8))]
    tile = _make_op(0, "TILE", (0, 1), (2,), tensors, None)
    assert (tile.macs, tile.ops) == (0, 16 * 2 * 16 * 8)
    assert tile.write_bytes == 4096 * 4
    reshape = _make_op(1, "RESHAPE", (2, 1), (0,), [tensors[2], tensors[1], tensors[0]], None)
    assert reshape.ops == 0  # a view
    for op_type in ("TRANSPOSE", "STRIDED_SLICE", "PACK", "UNPACK", "SPLIT", "REVERSE_V2", "GATHER", "CONCATENATION",
                    "PAD"):
        x, y = _t(0, (1, 6, 10)), _t(1, (1, 10, 6))
        assert work_of(tflite_family(op_type), op_type, [x], [], [y]) == (0, 60), op_type
    for op_type in ("transpose", "tile", "split", "stack", "reverse", "slice_by_index", "crop", "concat", "gather"):
        x, y = _t(0, (1, 6, 10)), _t(1, (1, 10, 6))
        assert work_of(mil_family(op_type), op_type, [x], [], [y], layout="mil") == (0, 60), op_type
    for op_type in ("reshape", "squeeze", "expand_dims"):
        assert work_of(mil_family(op_type), op_type, [_t(0, (1, 60))], [], [_t(1, (60,))], layout="mil") == (0, 0)


@pytest.mark.parametrize(
    ("op_type", "per_element"),
    [("ADD", 1), ("SUB", 1), ("MUL", 1), ("NEG", 1), ("LESS", 1), ("NOT_EQUAL", 1), ("SELECT", 1), ("SELECT_V2", 1),
     ("SQUARED_DIFFERENCE", 1), ("MAXIMUM", 1), ("MINIMUM", 1), ("QUANTIZE", 1), ("DEQUANTIZE", 1), ("RELU", 1),
     ("RELU6", 1), ("RSQRT", 4), ("LOGISTIC", 8), ("TANH", 8), ("HARD_SWISH", 4), ("GELU", 12)],
)
def test_elementwise_tflite_ops_count_operations_per_output_element(op_type: str, per_element: int) -> None:
    x, y = _t(0, (1, 7, 7, 32)), _t(1, (1, 7, 7, 32))
    assert work_of(tflite_family(op_type), op_type, [x, x], [], [y]) == (0, per_element * 7 * 7 * 32)


@pytest.mark.parametrize(
    ("op_type", "per_element"),
    [("add", 1), ("sub", 1), ("mul", 1), ("less", 1), ("not_equal", 1), ("select", 1), ("cast", 1), ("square", 1),
     ("relu", 1), ("relu6", 1), ("rsqrt", 4), ("sigmoid", 8), ("tanh", 8), ("silu", 9), ("erf", 10)],
)
def test_elementwise_mil_ops_count_operations_per_output_element(op_type: str, per_element: int) -> None:
    x, y = _t(0, (1, 32, 7, 7), "float16"), _t(1, (1, 32, 7, 7), "float16")
    assert work_of(mil_family(op_type), op_type, [x], [], [y], layout="mil") == (0, per_element * 7 * 7 * 32)


def test_pools_reductions_softmax_and_resizes() -> None:
    x, y = _t(0, (1, 28, 28, 16)), _t(1, (1, 14, 14, 16))
    assert work_of("pool", "MAX_POOL_2D", [x], [], [y], attrs={"window": 4}) == (0, 14 * 14 * 16 * 4)
    assert work_of("pool", "AVERAGE_POOL_2D", [x], [], [y], attrs={"window": 9}) == (0, 14 * 14 * 16 * 9)
    assert work_of("reduce", "MEAN", [x], [], [_t(2, (1, 16))]) == (0, 28 * 28 * 16)
    assert work_of("reduce", "reduce_mean", [x], [], [_t(2, (1, 16))], layout="mil") == (0, 28 * 28 * 16)
    assert work_of("softmax", "SOFTMAX", [_t(0, (1, 4, 64, 64))], [], [_t(1, (1, 4, 64, 64))]) == (0, 12 * 16384)
    big = _t(1, (1, 56, 56, 16))
    assert work_of("resize", "RESIZE_BILINEAR", [x], [], [big]) == (0, 4 * 56 * 56 * 16)
    assert work_of("resize", "RESIZE_NEAREST_NEIGHBOR", [x], [], [big]) == (0, 56 * 56 * 16)


def test_matmuls_and_dense_layers() -> None:
    # attention scores: 2 heads, 16 queries, 16 keys of 16 features; adj_x transposes the left operand
    q, k, s = _t(0, (1, 2, 16, 16)), _t(1, (1, 2, 16, 16)), _t(2, (1, 2, 16, 16))
    assert work_of("matmul", "BATCH_MATMUL", [q, k], [], [s])[0] == 2 * 16 * 16 * 16
    a, b, c = _t(0, (1, 64, 8)), _t(1, (1, 64, 32)), _t(2, (1, 8, 32))
    assert work_of("matmul", "matmul", [a, b], [], [c], layout="mil", attrs={"transpose_x": True})[0] == 8 * 32 * 64
    # dense on a 16-token sequence with 32 -> 64 features (LiteRT keeps [Cout, Cin])
    tensors = [_t(0, (1, 16, 32)), _t(1, (64, 32), constant=True), _t(2, (64,), constant=True), _t(3, (1, 16, 64))]
    op = _make_op(0, "FULLY_CONNECTED", (0, 1, 2), (3,), tensors, None)
    assert op.macs == 16 * 64 * 32 and op.family == "matmul"  # 16 rows: a GEMM
    x, w, y = _t(0, (1, 64)), _t(1, (10, 64), constant=True), _t(2, (1, 10))
    assert work_of("fc", "linear", [x], [w], [y], layout="mil")[0] == 640


def test_depthwise_and_grouped_conv() -> None:
    tensors = [_t(0, (1, 14, 14, 32)), _t(1, (1, 5, 5, 32), constant=True), _t(2, (32,), constant=True),
               _t(3, (1, 7, 7, 32))]
    assert _make_op(0, "DEPTHWISE_CONV_2D", (0, 1, 2), (3,), tensors, None).macs == 7 * 7 * 32 * 25
    # Conv1D reaches LiteRT as CONV_2D on a 1 x W image: filter [Cout, 1, K, Cin]
    x, w, y = _t(0, (1, 1, 796, 1)), _t(1, (8, 1, 9, 1), constant=True), _t(2, (1, 1, 396, 8))
    assert work_of("conv", "CONV_2D", [x], [w], [y])[0] == 396 * 8 * 9


def test_fused_recurrent_and_attention_ops() -> None:
    # LiteRT UNIDIRECTIONAL_SEQUENCE_LSTM: [B, T, I] = [1, 8, 16], 32 units: 4 input and 4 recurrent matrices
    x = _t(0, (1, 8, 16))
    weights = [_t(1 + g, (32, 16), constant=True) for g in range(4)] + \
        [_t(5 + g, (32, 32), constant=True) for g in range(4)] + [_t(9, (32,), constant=True)]
    macs, _ = work_of("recurrent", "UNIDIRECTIONAL_SEQUENCE_LSTM", [x], weights, [_t(10, (1, 8, 32))])
    assert macs == 8 * 4 * 32 * (16 + 32)
    # MIL lstm is sequence-first: [T, B, I]
    weights_mil = [_t(1, (128, 16), constant=True), _t(2, (128, 32), constant=True)]
    macs, _ = work_of("recurrent", "lstm", [_t(0, (8, 1, 16))], weights_mil, [_t(3, (8, 1, 32))], layout="mil")
    assert macs == 8 * 128 * (16 + 32)
    # scaled_dot_product_attention: Q [1, 2, 10, 16], K [1, 2, 12, 16], V [1, 2, 12, 24] -> [1, 2, 10, 24]
    q, k, v, o = _t(0, (1, 2, 10, 16)), _t(1, (1, 2, 12, 16)), _t(2, (1, 2, 12, 24)), _t(3, (1, 2, 10, 24))
    macs, _ = work_of("attention", "scaled_dot_product_attention", [q, k, v], [], [o], layout="mil")
    assert macs == 2 * 10 * 12 * 16 + 2 * 10 * 24 * 12
