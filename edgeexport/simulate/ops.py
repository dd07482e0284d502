"""Op families and the arithmetic work of one op (MACs and operations), shared by every artifact reader.

Families (the keys of ``ComputeUnit.efficiency`` and ``op_families``): conv, depthwise, fc, matmul,
elementwise, activation, pool, reduce, softmax, norm, reshape, concat, pad, resize, recurrent, gather,
attention, and ``other`` for anything unknown (costed as element-wise work and listed as not costed).

Work models (``work_model``): ``macs`` (multiply-accumulates over weights or a second operand), ``elementwise``
(arithmetic per output element, more for transcendentals), ``copy`` (one operation per element written: the
op moves bytes), ``view`` (no work: LiteRT and Core ML change the shape without touching the data), ``reduce``,
``pool``, ``softmax``, ``norm``, ``resize``. An op type with no entry has no work model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from edgeexport.simulate.graph import Tensor
from edgeexport.targets.base import TFLITE

# The layout the Core ML reader passes ([Cout, Cin/g, Kh, Kw] filters); any other is LiteRT's (filters end in Cin)
MIL: Final = "mil"

FAMILIES = (
    "conv", "depthwise", "fc", "matmul", "elementwise", "activation", "pool", "reduce", "softmax", "norm",
    "reshape", "concat", "pad", "resize", "recurrent", "gather", "attention", "other",
)

# Families whose work is multiply-accumulates over weights; the rest are costed per element.
MAC_FAMILIES = frozenset({"conv", "depthwise", "fc", "matmul", "recurrent", "attention"})

# Families that only move data (no arithmetic); LiteRT/XNNPACK run them as copies.
DATA_MOVEMENT = frozenset({"reshape", "concat", "pad", "gather"})

_TFLITE_FAMILY: dict[str, str] = {}


def _register(family: str, names: str) -> None:
    for name in names.split():
        _TFLITE_FAMILY[name] = family


_register("conv", "CONV_2D CONV_3D TRANSPOSE_CONV CONV_3D_TRANSPOSE STABLEHLO_CONVOLUTION")
_register("depthwise", "DEPTHWISE_CONV_2D")
_register("fc", "FULLY_CONNECTED")
_register("matmul", "BATCH_MATMUL STABLEHLO_DOT_GENERAL")
_register(
    "elementwise",
    "ADD SUB MUL DIV MAXIMUM MINIMUM SQUARED_DIFFERENCE POW FLOOR_DIV FLOOR_MOD ADD_N SQRT RSQRT SQUARE ABS NEG "
    "EXP LOG SIN COS FLOOR CEIL ROUND SIGN LESS GREATER EQUAL NOT_EQUAL LESS_EQUAL GREATER_EQUAL SELECT SELECT_V2 "
    "LOGICAL_AND LOGICAL_OR LOGICAL_NOT CAST QUANTIZE DEQUANTIZE ZEROS_LIKE FILL STABLEHLO_ADD STABLEHLO_MULTIPLY "
    "STABLEHLO_DIVIDE STABLEHLO_SUBTRACT STABLEHLO_MAXIMUM STABLEHLO_MINIMUM ATAN2 CUMSUM",
)
_register(
    "activation",
    "RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LOGISTIC TANH HARD_SWISH LEAKY_RELU PRELU ELU GELU STABLEHLO_LOGISTIC "
    "STABLEHLO_TANH",
)
_register("pool", "AVERAGE_POOL_2D MAX_POOL_2D L2_POOL_2D REDUCE_WINDOW STABLEHLO_REDUCE_WINDOW")
_register("reduce", "MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD REDUCE_ANY REDUCE_ALL ARG_MAX ARG_MIN STABLEHLO_REDUCE")
_register("softmax", "SOFTMAX LOG_SOFTMAX")
_register("norm", "L2_NORMALIZATION LOCAL_RESPONSE_NORMALIZATION")
_register(
    "reshape",
    "RESHAPE SQUEEZE EXPAND_DIMS TRANSPOSE SHAPE STRIDED_SLICE SLICE SPLIT SPLIT_V PACK UNPACK TILE BROADCAST_TO "
    "DEPTH_TO_SPACE SPACE_TO_DEPTH BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND REVERSE_V2 STABLEHLO_RESHAPE "
    "STABLEHLO_TRANSPOSE STABLEHLO_SLICE STABLEHLO_BROADCAST_IN_DIM BITCAST",
)
_register("concat", "CONCATENATION STABLEHLO_CONCATENATE")
_register("pad", "PAD PADV2 MIRROR_PAD STABLEHLO_PAD")
_register("resize", "RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR")
_register(
    "recurrent",
    "LSTM UNIDIRECTIONAL_SEQUENCE_LSTM BIDIRECTIONAL_SEQUENCE_LSTM RNN UNIDIRECTIONAL_SEQUENCE_RNN "
    "BIDIRECTIONAL_SEQUENCE_RNN SVDF",
)
_register("gather", "GATHER GATHER_ND EMBEDDING_LOOKUP SCATTER_ND STABLEHLO_GATHER STABLEHLO_SCATTER ONE_HOT")

_MIL_FAMILY: dict[str, str] = {
    "conv": "conv", "conv_transpose": "conv", "linear": "fc", "matmul": "matmul", "einsum": "matmul",
    "scaled_dot_product_attention": "attention", "max_pool": "pool", "avg_pool": "pool", "l2_pool": "pool",
    "softmax": "softmax", "log_softmax": "softmax", "batch_norm": "norm", "layer_norm": "norm",
    "instance_norm": "norm", "l2_norm": "norm", "local_response_norm": "norm", "pad": "pad", "concat": "concat",
    "upsample_bilinear": "resize", "upsample_nearest_neighbor": "resize", "resize_bilinear": "resize",
    "resize_nearest_neighbor": "resize", "resize": "resize", "crop_resize": "resize", "lstm": "recurrent",
    "gru": "recurrent", "rnn": "recurrent", "gather": "gather", "gather_nd": "gather", "gather_along_axis": "gather",
    "scatter": "gather", "scatter_nd": "gather",
}
for _name in ["relu", "relu6", "sigmoid", "tanh", "silu", "gelu", "elu", "leaky_relu", "prelu", "softplus", "softsign", "sigmoid_hard", "scaled_tanh", "thresholded_relu", "clamped_relu", "linear_activation"]:
    _MIL_FAMILY[_name] = "activation"
for _name in ["reshape", "transpose", "squeeze", "expand_dims", "slice_by_index", "slice_by_size", "split", "tile", "stack", "depth_to_space", "space_to_depth", "pixel_shuffle", "reverse", "flatten2d", "identity", "shape", "crop", "sliding_windows"]:
    _MIL_FAMILY[_name] = "reshape"
for _name in ["reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_argmax", "reduce_argmin", "reduce_l2_norm", "reduce_log_sum_exp", "reduce_sum_square"]:
    _MIL_FAMILY[_name] = "reduce"
for _name in ["add", "sub", "mul", "real_div", "floor_div", "pow", "maximum", "minimum", "sqrt", "rsqrt", "square", "abs", "exp", "log", "sin", "cos", "floor", "ceil", "round", "sign", "inverse", "erf", "clip", "cast", "select", "less", "greater", "equal", "not_equal", "less_equal", "greater_equal", "logical_and", "logical_or", "logical_not", "quantize", "dequantize", "fill", "band_part", "cumsum"]:
    _MIL_FAMILY[_name] = "elementwise"

# Ops that only relabel a tensor's shape: no data is touched (XNNPACK and Core ML treat them as views).
VIEW_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE", "BITCAST", "STABLEHLO_RESHAPE", "reshape",
                      "squeeze", "expand_dims", "flatten2d", "identity", "shape"})

# Ops whose result is computed from shapes alone, nothing per element.
_SHAPE_ONLY = frozenset({"SHAPE", "shape"})

# Arithmetic operations per output element for element-wise work (transcendentals cost more than an add).
_ELEMENT_OPS: dict[str, int] = {
    "LOGISTIC": 8, "TANH": 8, "HARD_SWISH": 4, "GELU": 12, "ELU": 6, "EXP": 8, "LOG": 8, "SIN": 8, "COS": 8,
    "RSQRT": 4, "SQRT": 4, "DIV": 4, "POW": 10, "sigmoid": 8, "tanh": 8, "silu": 9, "gelu": 12, "erf": 10,
    "exp": 8, "log": 8, "real_div": 4, "rsqrt": 4, "sqrt": 4, "softplus": 10,
}


def tflite_family(op_type: str) -> str:
    """The family of a LiteRT builtin op name (``other`` when unknown, e.g. CUSTOM)."""
    return _TFLITE_FAMILY.get(op_type, "other")


def mil_family(op_type: str, groups: int = 1, in_channels: int = 0) -> str:
    """The family of a MIL op; a grouped conv with one input channel per group is ``depthwise``."""
    family = _MIL_FAMILY.get(op_type, "other")
    if family == "conv" and op_type == "conv" and groups > 1 and in_channels == groups:
        return "depthwise"
    return family


def work_model(family: str, op_type: str) -> str | None:
    """The work model of an op (see the module docstring), or None when it has none (family ``other``)."""
    if family == "other":
        return None
    if family in MAC_FAMILIES:
        return "macs"
    if family == "reshape":
        return "view" if op_type in VIEW_OPS else "copy"
    if family in DATA_MOVEMENT:
        return "copy"
    if family in ("elementwise", "activation"):
        return "elementwise"
    return family


def not_costed(family: str, op_type: str, macs: int) -> bool:
    """True when the op's time is a guess: no work model, or a MAC op whose weights or shapes were not found."""
    return work_model(family, op_type) is None or (family in MAC_FAMILIES and macs == 0)


def _prod(dims: Sequence[int]) -> int:
    n = 1
    for d in dims:
        n *= max(int(d), 1)
    return n


def _filter(weights: Sequence[Tensor]) -> Tensor | None:
    """The filter among an op's constants: the first of rank >= 3 (LiteRT's TRANSPOSE_CONV lists its int32
    output-shape vector before the filter; biases are rank 1)."""
    return next((w for w in weights if len(w.shape) >= 3), None)


def _conv_macs(family: str, op_type: str, activations_in: Sequence[Tensor], weight: Tensor, out_elems: int,
               layout: str) -> int:
    if op_type in ("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE", "conv_transpose"):
        # each input element scatters into Kh x Kw x Cout outputs: LiteRT filter [Cout, Kh, Kw, Cin],
        # MIL [Cin, Cout/groups, Kh, Kw]
        src = max((t.elements for t in activations_in if len(t.shape) >= 3), default=out_elems)
        per_in = _prod(weight.shape[:-1]) if layout != MIL else _prod(weight.shape[1:])
        return src * per_in
    if family == "depthwise" and layout != MIL:
        return out_elems * _prod(weight.shape[1:-1])  # [1, Kh, Kw, Cout]: one window per output
    return out_elems * _prod(weight.shape[1:])  # LiteRT [Cout, Kh, Kw, Cin/g], MIL [Cout, Cin/g, Kh, Kw]


def _attention_macs(operands: Sequence[Tensor], out_elems: int) -> int:
    """MIL scaled_dot_product_attention: Q [.., L, E], K [.., S, E], V [.., S, Ev] -> [.., L, Ev]:
    Q K^T is L x S x E per head, the weighted sum over V L x S x Ev."""
    q, k = operands[0], operands[1]
    seq = k.shape[-2] if len(k.shape) >= 2 else 1
    return _prod(q.shape[:-1]) * int(seq) * int(q.shape[-1] if q.shape else 1) + out_elems * int(seq)


def _recurrent_macs(op_type: str, activations_in: Sequence[Tensor], weights: Sequence[Tensor], layout: str) -> int:
    """Fused recurrent ops: every step multiplies the input and the state by all gate matrices (the 2-D
    weights). LiteRT sequence ops take [B, T, I] (time_major False), MIL lstm/gru/rnn take [T, B, I]."""
    x = activations_in[0] if activations_in else None
    steps = 1
    if x is not None and len(x.shape) >= 3:
        steps = x.shape[0] if layout == "mil" else x.shape[1]
    batch = 1
    if x is not None and len(x.shape) >= 3:
        batch = x.shape[1] if layout == "mil" else x.shape[0]
    return int(steps) * int(batch) * sum(w.elements for w in weights if len(w.shape) == 2)


def work_of(
    family: str,
    op_type: str,
    activations_in: Sequence[Tensor],
    weights: Sequence[Tensor],
    outputs: Sequence[Tensor],
    *,
    layout: str = TFLITE,
    attrs: dict[str, object] | None = None,
) -> tuple[int, int]:
    """MACs and arithmetic operations of one op, at batch 1 unless the shapes say otherwise.

    ``layout`` tells where the weight dims are: LiteRT conv filters are ``[Cout, Kh, Kw, Cin/groups]``,
    depthwise ``[1, Kh, Kw, Cout]``, transposed conv ``[Cout, Kh, Kw, Cin]``, fully connected ``[Cout, Cin]``;
    MIL conv weights are ``[Cout, Cin/groups, Kh, Kw]``, conv_transpose ``[Cin, Cout/groups, Kh, Kw]`` and
    ``linear`` weights ``[Cout, Cin]``. Returns ``(macs, ops)`` with ``ops = 2 * macs`` plus element-wise
    work; ``macs`` is 0 for a MAC op whose weights are missing (``not_costed`` then says so).
    """
    attrs = attrs or {}
    out_elems = sum(t.elements for t in outputs) if outputs else 0
    macs = 0
    if family in ("conv", "depthwise"):
        weight = _filter(weights)
        if weight is not None:
            macs = _conv_macs(family, op_type, activations_in, weight, out_elems, layout)
    elif family == "fc" and weights:
        weight = next((w for w in weights if len(w.shape) >= 2), weights[0])
        macs = out_elems * int(weight.shape[-1] if weight.shape else 1)
    elif family in ("matmul", "attention"):
        operands = list(activations_in) + list(weights)
        if len(operands) >= 2 and family == "attention":
            macs = _attention_macs(operands, out_elems)
        elif len(operands) >= 2:
            a = operands[0]
            transpose_a = bool(attrs.get("adj_x") or attrs.get("transpose_x"))
            k = a.shape[-2] if transpose_a and len(a.shape) >= 2 else (a.shape[-1] if a.shape else 1)
            macs = out_elems * max(int(k), 1)
    elif family == "recurrent" and weights:
        macs = _recurrent_macs(op_type, activations_in, weights, layout)
    ops = 2 * macs
    if family not in MAC_FAMILIES or macs == 0:
        ops += _elementwise_ops(family, op_type, activations_in, outputs, attrs)
    return macs, ops


def _elementwise_ops(
    family: str, op_type: str, activations_in: Sequence[Tensor], outputs: Sequence[Tensor], attrs: dict[str, object]
) -> int:
    out_elems = sum(t.elements for t in outputs)
    in_elems = sum(t.elements for t in activations_in)
    if op_type in VIEW_OPS or op_type in _SHAPE_ONLY:
        return 0  # a view: no byte is touched
    if family in DATA_MOVEMENT or family == "reshape":
        return out_elems  # TILE, TRANSPOSE, slices, packs: one operation per element written (a copy)
    if family == "pool":
        window: int = int(attrs.get("window", 1))  # type: ignore[call-overload]
        return int(out_elems) * max(window, 1)
    if family == "reduce":
        return max(in_elems, out_elems)
    if family == "softmax":
        return 12 * out_elems  # max, subtract, exp (~8), sum, divide
    if family == "norm":
        return 8 * out_elems
    if family == "resize":
        return (4 if "BILINEAR" in op_type.upper() else 1) * out_elems
    return _ELEMENT_OPS.get(op_type, 1) * out_elems
