"""MIL executor kernels (all families but conv/pool) against formulas written out here, independently.

Each reference is the textbook formula or a plain Python construction (math.erf per element, explicit
index arithmetic), never the kernel's own helper. No TensorFlow import: these run in well under a second.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeexport.runtimes.mil import supported_ops
from edgeexport.runtimes.mil.registry import kernels

K = kernels()
RNG = np.random.default_rng(1)


def rand(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


# --- registry -----------------------------------------------------------------------------------------------


def test_supported_ops_cover_the_ops_converted_models_use() -> None:
    needed = {
        "add", "sub", "mul", "real_div", "cast", "const", "conv", "conv_transpose", "matmul", "linear", "einsum",
        "max_pool", "avg_pool", "pad", "reduce_mean", "reduce_max", "relu", "relu6", "reshape", "sigmoid", "silu",
        "softmax", "transpose", "gelu", "erf", "softplus", "sigmoid_hard", "prelu", "clip", "batch_norm",
        "layer_norm", "instance_norm", "l2_norm", "concat", "split", "slice_by_index", "slice_by_size", "gather",
        "gather_nd", "squeeze", "expand_dims", "tile", "stack", "shape", "range_1d", "fill", "select", "one_hot",
        "crop", "tanh", "rsqrt", "square", "less", "constexpr_affine_dequantize", "constexpr_lut_to_dense",
        "constexpr_sparse_to_dense", "constexpr_cast", "constexpr_blockwise_shift_scale", "constexpr_lut_to_sparse",
        "constexpr_sparse_blockwise_shift_scale",
    }
    assert needed <= set(supported_ops())
    assert supported_ops() == sorted(supported_ops())


# --- elementwise --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op, fn", [
    ("add", lambda x, y: x + y), ("sub", lambda x, y: x - y), ("mul", lambda x, y: x * y),
    ("real_div", lambda x, y: x / y), ("maximum", np.maximum), ("minimum", np.minimum),
    ("greater", lambda x, y: x > y), ("less_equal", lambda x, y: x <= y), ("equal", lambda x, y: x == y),
])
def test_binary_ops_broadcast(op: str, fn) -> None:
    x, y = rand(2, 1, 4), rand(3, 1) + 3.0
    got = K[op]({"x": x, "y": y})
    assert got.shape == (2, 3, 4)
    np.testing.assert_allclose(got, fn(x, y), rtol=1e-6)


def test_floor_div_and_mod_follow_floor_semantics() -> None:
    x, y = np.array([7, -7, 7, -7]), np.array([2, 2, -2, -2])
    np.testing.assert_array_equal(K["floor_div"]({"x": x, "y": y}), [3, -4, -4, 3])
    np.testing.assert_array_equal(K["mod"]({"x": x, "y": y}), [1, 1, -1, -1])


def test_epsilon_unaries_use_mil_defaults() -> None:
    x = np.array([0.0, 0.25, 4.0], dtype=np.float32)
    np.testing.assert_allclose(K["rsqrt"]({"x": x[1:]}), 1 / np.sqrt(x[1:] + 1e-12), rtol=1e-6)
    np.testing.assert_allclose(K["inverse"]({"x": x, "epsilon": np.float32(0.5)}), 1 / (x + 0.5), rtol=1e-6)
    assert np.isfinite(K["log"]({"x": x})).all()  # log(0 + 1e-45) stays finite
    np.testing.assert_allclose(K["log"]({"x": x[1:]}), np.log(x[1:]), rtol=1e-6)


def test_erf_matches_math_erf() -> None:
    x = np.linspace(-4, 4, 41, dtype=np.float32)
    want = np.array([math.erf(float(v)) for v in x])
    np.testing.assert_allclose(K["erf"]({"x": x}), want, atol=1e-6)


# --- activations --------------------------------------------------------------------------------------------


def test_gelu_modes() -> None:
    x = np.linspace(-5, 5, 101, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    sig = x / (1 + np.exp(-1.702 * x))
    np.testing.assert_allclose(K["gelu"]({"x": x}), exact, atol=1e-6)
    np.testing.assert_allclose(K["gelu"]({"x": x, "mode": "EXACT"}), exact, atol=1e-6)
    np.testing.assert_allclose(K["gelu"]({"x": x, "mode": "TANH_APPROXIMATION"}), tanh, atol=1e-6)
    np.testing.assert_allclose(K["gelu"]({"x": x, "mode": "SIGMOID_APPROXIMATION"}), sig, atol=1e-6)


@pytest.mark.parametrize("op, args, fn", [
    ("relu", {}, lambda x: np.where(x > 0, x, 0)),
    ("relu6", {}, lambda x: np.minimum(np.maximum(x, 0), 6)),
    ("leaky_relu", {"alpha": 0.2}, lambda x: np.where(x > 0, x, 0.2 * x)),
    ("elu", {"alpha": 1.5}, lambda x: np.where(x > 0, x, 1.5 * (np.exp(x) - 1))),
    ("sigmoid", {}, lambda x: 1 / (1 + np.exp(-x))),
    ("sigmoid_hard", {"alpha": 0.2, "beta": 0.5}, lambda x: np.minimum(np.maximum(0.2 * x + 0.5, 0), 1)),
    ("silu", {}, lambda x: x / (1 + np.exp(-x))),
    ("softplus", {}, lambda x: np.log(1 + np.exp(x))),
    ("softsign", {}, lambda x: x / (1 + np.abs(x))),
    ("tanh", {}, np.tanh),
    ("scaled_tanh", {"alpha": 2.0, "beta": 0.5}, lambda x: 2 * np.tanh(0.5 * x)),
    ("thresholded_relu", {"alpha": 0.5}, lambda x: np.where(x >= 0.5, x, 0)),
    ("clip", {"alpha": -0.5, "beta": 0.7}, lambda x: np.minimum(np.maximum(x, -0.5), 0.7)),
])
def test_activation_formulas(op: str, args: dict, fn) -> None:
    x = np.linspace(-8, 8, 77).astype(np.float32)
    got = K[op]({"x": x, **{k: np.float32(v) for k, v in args.items()}})
    np.testing.assert_allclose(got, fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_sigmoid_and_softplus_do_not_overflow() -> None:
    x = np.array([-1000.0, 1000.0], dtype=np.float32)
    np.testing.assert_array_equal(K["sigmoid"]({"x": x}), [0.0, 1.0])
    np.testing.assert_allclose(K["softplus"]({"x": x}), [0.0, 1000.0])


def test_prelu_is_per_channel_on_axis_1() -> None:
    x = rand(2, 3, 4, 5)
    alpha = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    want = np.where(x > 0, x, x * alpha[None, :, None, None])
    np.testing.assert_allclose(K["prelu"]({"x": x, "alpha": alpha}), want, rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_axis(axis: int) -> None:
    x = rand(3, 4) * 10
    e = np.exp(x.astype(np.float64))
    np.testing.assert_allclose(K["softmax"]({"x": x, "axis": np.int32(axis)}), e / e.sum(axis=axis, keepdims=True),
                               rtol=1e-5)


# --- linalg -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tx, ty", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_transposes_and_broadcasts(tx: bool, ty: bool) -> None:
    x = rand(2, 1, 5, 3) if tx else rand(2, 1, 3, 5)
    y = rand(4, 6, 5) if ty else rand(4, 5, 6)
    xx = np.swapaxes(x, -1, -2) if tx else x
    yy = np.swapaxes(y, -1, -2) if ty else y
    want = np.einsum("...ij,...jk->...ik", xx, yy)
    got = K["matmul"]({"x": x, "y": y, "transpose_x": tx, "transpose_y": ty})
    assert got.shape == (2, 4, 3, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_linear_and_einsum() -> None:
    x, w, b = rand(2, 7, 4), rand(3, 4), rand(3)
    want = np.array([[[sum(x[i, t, k] * w[o, k] for k in range(4)) + b[o] for o in range(3)] for t in range(7)]
                     for i in range(2)])
    np.testing.assert_allclose(K["linear"]({"x": x, "weight": w, "bias": b}), want, rtol=1e-4, atol=1e-5)
    a, c = rand(2, 3, 4), rand(2, 4, 5)
    np.testing.assert_allclose(K["einsum"]({"values": [a, c], "equation": "bij,bjk->bik"}), a @ c, rtol=1e-5)


# --- normalization ------------------------------------------------------------------------------------------


def test_batch_norm_per_channel() -> None:
    x = rand(2, 3, 4, 4)
    mean, var, gamma, beta = rand(3), np.abs(rand(3)) + 0.5, rand(3), rand(3)
    got = K["batch_norm"]({"x": x, "mean": mean, "variance": var, "gamma": gamma, "beta": beta,
                           "epsilon": np.float32(1e-3)})
    c = (slice(None), None, None)
    want = (x - mean[c]) / np.sqrt(var[c] + 1e-3) * gamma[c] + beta[c]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axes", [[-1], [1], [1, 2], [0, 2]])
def test_layer_norm_any_axes(axes: list[int]) -> None:
    x = rand(2, 3, 4)
    norm = tuple(a % 3 for a in axes)
    gshape = tuple(x.shape[i] for i in norm)
    gamma, beta = rand(*gshape), rand(*gshape)
    mu = x.mean(axis=norm, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(axis=norm, keepdims=True) + 1e-5)
    bshape = [x.shape[i] if i in norm else 1 for i in range(3)]
    want = (x - mu) / sd * gamma.reshape(bshape) + beta.reshape(bshape)
    got = K["layer_norm"]({"x": x, "axes": np.array(axes), "gamma": gamma, "beta": beta})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_instance_and_l2_norm() -> None:
    x = rand(2, 3, 5, 4)
    gamma, beta = rand(3), rand(3)
    mu = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    want = (x - mu) / np.sqrt(var + 1e-5) * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(K["instance_norm"]({"x": x, "gamma": gamma, "beta": beta}), want, rtol=1e-4,
                               atol=1e-5)
    l2 = x / np.sqrt((x**2).sum(axis=(1, 2, 3), keepdims=True) + 1e-6)
    np.testing.assert_allclose(K["l2_norm"]({"x": x}), l2, rtol=1e-5)


# --- reductions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op, fn", [
    ("reduce_sum", np.sum), ("reduce_mean", np.mean), ("reduce_max", np.max), ("reduce_min", np.min),
    ("reduce_prod", np.prod), ("reduce_l2_norm", lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis,
                                                                                         keepdims=keepdims))),
    ("reduce_log_sum_exp", lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))),
])
@pytest.mark.parametrize("axes, keep", [([-1], False), ([0, -2], True), (None, False)])
def test_reductions_negative_axes_keep_dims(op: str, fn, axes, keep: bool) -> None:
    x = rand(2, 3, 4)
    args = {"x": x, "keep_dims": keep}
    if axes is not None:
        args["axes"] = np.array(axes)
    want = fn(x.astype(np.float64), axis=None if axes is None else tuple(axes), keepdims=keep)
    got = K[op](args)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_argmax_keep_dims() -> None:
    x = rand(3, 5)
    got = K["reduce_argmax"]({"x": x, "axis": np.int32(-1), "keep_dims": True})
    assert got.shape == (3, 1) and got.dtype == np.int32
    assert [int(v) for v in got.ravel()] == [max(range(5), key=lambda j: x[i, j]) for i in range(3)]


# --- tensor manipulation ------------------------------------------------------------------------------------


def test_reshape_with_zero_and_minus_one() -> None:
    x = rand(2, 3, 4)
    assert K["reshape"]({"x": x, "shape": np.array([0, -1, 2])}).shape == (2, 6, 2)
    assert K["reshape"]({"x": x, "shape": np.array([4, 6])}).shape == (4, 6)


def test_slice_by_index_masks_and_strides() -> None:
    x = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    got = K["slice_by_index"]({
        "x": x, "begin": np.array([1, 0, 5]), "end": np.array([3, 2, 0]), "stride": np.array([1, 1, -2]),
        "begin_mask": np.array([False, True, False]), "end_mask": np.array([False, False, True]),
        "squeeze_mask": np.array([False, False, False]),
    })
    np.testing.assert_array_equal(got, x[1:3, :2, 5::-2])
    squeezed = K["slice_by_index"]({"x": x, "begin": np.array([-1, 0, 0]), "end": np.array([0, 5, 6]),
                                    "squeeze_mask": np.array([True, False, False])})
    np.testing.assert_array_equal(squeezed, x[3])


def test_slice_by_size_and_crop() -> None:
    x = np.arange(5 * 6).reshape(5, 6)
    np.testing.assert_array_equal(K["slice_by_size"]({"x": x, "begin": np.array([1, -4]), "size": np.array([-1, 2])}),
                                  x[1:, 2:4])
    y = np.arange(2 * 5 * 6).reshape(1, 2, 5, 6)
    np.testing.assert_array_equal(K["crop"]({"x": y, "crop_height": np.array([1, 2]), "crop_width": np.array([0, 1])}),
                                  y[:, :, 1:3, 0:5])


def test_gather_family() -> None:
    x = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    idx = np.array([[0, -1], [2, 1]])
    want = np.array([[[x[i, j if j >= 0 else 4 + j, k] for k in range(5)] for j in row] for i in range(3)
                     for row in [idx[0]]])
    got = K["gather"]({"x": x, "indices": idx, "axis": np.int32(-2)})
    assert got.shape == (3, 2, 2, 5)
    np.testing.assert_array_equal(got[:, 0], want.reshape(3, 2, 5))
    bidx = np.array([[1, 0], [3, 3], [2, 0]])  # batch_dims=1: one index row per batch entry
    got_b = K["gather"]({"x": x, "indices": bidx, "axis": np.int32(1), "batch_dims": np.int32(1)})
    np.testing.assert_array_equal(got_b, np.stack([x[b][bidx[b]] for b in range(3)]))
    nd = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(K["gather_nd"]({"x": x, "indices": nd}), np.stack([x[0, 1], x[2, 3]]))
    along = np.array([[[1], [0], [3], [2]]] * 3)
    np.testing.assert_array_equal(K["gather_along_axis"]({"x": x, "indices": along, "axis": np.int32(2)}),
                                  np.take_along_axis(x, along, axis=2))


def test_concat_split_stack() -> None:
    a, b = rand(2, 3), rand(2, 3)
    np.testing.assert_array_equal(K["concat"]({"values": [a, b], "axis": np.int32(-1)}), np.hstack([a, b]))
    inter = K["concat"]({"values": [a, b], "axis": np.int32(0), "interleave": True})
    np.testing.assert_array_equal(inter, np.array([a[0], b[0], a[1], b[1]]))
    parts = K["split"]({"x": rand(2, 7), "split_sizes": np.array([3, 4]), "axis": np.int32(-1)})
    assert [p.shape for p in parts] == [(2, 3), (2, 4)]
    assert len(K["split"]({"x": rand(6, 2), "num_splits": np.int32(3), "axis": np.int32(0)})) == 3
    assert K["stack"]({"values": [a, b], "axis": np.int32(1)}).shape == (2, 2, 3)


def test_squeeze_expand_tile_transpose() -> None:
    x = rand(1, 3, 1, 2)
    assert K["squeeze"]({"x": x, "axes": np.array([-2])}).shape == (1, 3, 2)
    assert K["squeeze"]({"x": x}).shape == (3, 2)
    assert K["expand_dims"]({"x": rand(3, 2), "axes": np.array([0, -1])}).shape == (1, 3, 2, 1)
    np.testing.assert_array_equal(K["tile"]({"x": np.array([[1, 2]]), "reps": np.array([2, 2])}),
                                  [[1, 2, 1, 2], [1, 2, 1, 2]])
    assert K["transpose"]({"x": x, "perm": np.array([3, 2, 1, 0])}).shape == (2, 1, 3, 1)


@pytest.mark.parametrize("mode, np_mode", [("constant", "constant"), ("reflect", "reflect"), ("replicate", "edge")])
def test_pad_modes_pad_the_last_dims(mode: str, np_mode: str) -> None:
    x = rand(2, 3, 4)
    args = {"x": x, "pad": np.array([1, 2, 2, 1]), "mode": mode}
    kw = {"constant_values": 0.5} if mode == "constant" else {}
    if mode == "constant":
        args["constant_val"] = np.float32(0.5)
    np.testing.assert_array_equal(K["pad"](args), np.pad(x, [(0, 0), (1, 2), (2, 1)], mode=np_mode, **kw))


def test_generators_and_select() -> None:
    np.testing.assert_array_equal(K["range_1d"]({"start": np.int32(2), "end": np.int32(11), "step": np.int32(3)}),
                                  [2, 5, 8])
    np.testing.assert_array_equal(K["fill"]({"shape": np.array([2, 2]), "value": np.float32(1.5)}), [[1.5] * 2] * 2)
    np.testing.assert_array_equal(K["shape"]({"x": rand(4, 1, 2)}), [4, 1, 2])
    cond = np.array([True, False, True])
    np.testing.assert_array_equal(K["select"]({"cond": cond, "a": np.array([1, 2, 3]), "b": np.array(0)}), [1, 0, 3])
    hot = K["one_hot"]({"indices": np.array([2, 0]), "one_hot_vector_size": np.int32(3), "axis": np.int32(0),
                        "on_value": np.float32(5), "off_value": np.float32(-1)})
    np.testing.assert_array_equal(hot, [[-1, 5], [-1, -1], [5, -1]])


def test_band_part_topk_cumsum() -> None:
    x = np.ones((4, 4))
    np.testing.assert_array_equal(K["band_part"]({"x": x, "lower": np.int32(0), "upper": np.int32(-1)}), np.triu(x))
    v, i = K["topk"]({"x": np.array([[3.0, 1.0, 4.0, 1.5]]), "k": np.int32(2)})
    np.testing.assert_array_equal(v, [[4.0, 3.0]])
    np.testing.assert_array_equal(i, [[2, 0]])
    np.testing.assert_array_equal(K["cumsum"]({"x": np.array([1, 2, 3]), "axis": np.int32(0), "exclusive": True,
                                               "reverse": True}), [5, 3, 0])


# --- constexpr (compressed weights) -------------------------------------------------------------------------


def test_lut_to_dense_ios16_unpacks_lsb_first() -> None:
    # The example of the MIL spec: 2-bit indices 0,3,2,1 in byte 0 (LSB first) and 3 in byte 1.
    packed = np.array([0b01101100, 0b00000011], dtype=np.uint8)
    lut = np.array([10.0, 11.0, 12.0, 13.0], dtype=np.float32)
    got = K["constexpr_lut_to_dense"]({"indices": packed, "lut": lut, "shape": np.array([5], dtype=np.uint32)})
    np.testing.assert_array_equal(got, [10.0, 13.0, 12.0, 11.0, 13.0])


def test_sparse_to_dense_ios16_and_ios18() -> None:
    mask16 = np.array([0b00001100], dtype=np.uint8)  # elements 2 and 3 of 5 are set
    got = K["constexpr_sparse_to_dense"]({"nonzero_data": np.array([7.0, 8.0], dtype=np.float32), "mask": mask16,
                                          "shape": np.array([5], dtype=np.uint32)})
    np.testing.assert_array_equal(got, [0, 0, 7, 8, 0])
    mask18 = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    got18 = K["constexpr_sparse_to_dense"]({"nonzero_data": np.array([1.0, 2.0], dtype=np.float32), "mask": mask18})
    np.testing.assert_array_equal(got18, [[1, 0], [0, 2]])


def test_affine_dequantize_along_axis() -> None:
    q = np.array([[0, 10], [20, 30], [40, 50]], dtype=np.int8)
    got = K["constexpr_affine_dequantize"]({"quantized_data": q, "zero_point": np.array([0, 10, 20], dtype=np.int8),
                                            "scale": np.array([1.0, 0.5, 0.25], dtype=np.float32),
                                            "axis": np.int32(0)})
    np.testing.assert_allclose(got, [[0, 10], [5, 10], [5, 7.5]])


def test_blockwise_shift_scale_repeats_blocks() -> None:
    data = np.arange(8, dtype=np.int8).reshape(2, 4)
    scale = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)  # block size (1, 2)
    offset = np.array([[0, 1], [2, 3]], dtype=np.int8)
    got = K["constexpr_blockwise_shift_scale"]({"data": data, "scale": scale, "offset": offset})
    want = [[(0 - 0) * 1, (1 - 0) * 1, (2 - 1) * 2, (3 - 1) * 2], [(4 - 2) * 3, (5 - 2) * 3, (6 - 3) * 4, (7 - 3) * 4]]
    np.testing.assert_allclose(got, want)


def test_lut_to_dense_ios18_grouped_and_vector() -> None:
    # The spec's "Case 1": two 2-bit LUTs over the first axis (rows 0-2 use lut0, rows 3-5 lut1).
    indices = np.array([2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3], dtype=np.uint8).reshape(6, 2)
    lut = np.array([1, 5, 9, 13, 2, 10, 18, 26], dtype=np.float32).reshape(2, 1, 4, 1)
    got = K["constexpr_lut_to_dense"]({"indices": indices, "lut": lut})
    np.testing.assert_array_equal(got, [[9, 13], [13, 1], [5, 1], [26, 2], [18, 10], [2, 26]])
    # The spec's "Case 2.2": vector palettization along the last axis.
    vi = np.array([[[0, 0], [1, 0]], [[1, 1], [0, 0]]], dtype=np.uint8)
    vlut = np.array([1, 2, 3, 7, 8, 9], dtype=np.float32).reshape(1, 1, 1, 2, 3)
    vgot = K["constexpr_lut_to_dense"]({"indices": vi, "lut": vlut, "vector_axis": np.int32(2)})
    np.testing.assert_array_equal(vgot[0, 1], [7, 8, 9, 1, 2, 3])
    assert vgot.shape == (2, 2, 6)


def test_sparse_compressed_pairs() -> None:
    mask = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.uint8)
    out_mask, values = K["constexpr_sparse_blockwise_shift_scale"]({
        "data_mask": mask, "nonzero_data": np.array([10, 11, 12, 13], dtype=np.int8),
        "scale": np.array([[0.5, 1.0, 2.0]], dtype=np.float32), "offset": np.array([[1, 1, 1]], dtype=np.int8)})
    np.testing.assert_array_equal(out_mask, mask)
    np.testing.assert_allclose(values, [(10 - 1) * 0.5, (11 - 1) * 1.0, (12 - 1) * 1.0, (13 - 1) * 2.0])
    m2, v2 = K["constexpr_lut_to_sparse"]({"indices_mask": mask, "indices_nonzero_data": np.array([0, 1, 1, 0], np.uint8),
                                           "lut": np.array([5.0, 6.0], np.float32).reshape(1, 1, 2, 1)})
    np.testing.assert_array_equal(m2, mask)
    np.testing.assert_array_equal(v2, [5, 6, 6, 5])


# --- fp16 rounding ------------------------------------------------------------------------------------------


def test_round_to_fp16_is_bit_identical_to_numpy_half_cast() -> None:
    from edgeexport.runtimes.mil.precision import round_to_fp16

    bits = np.random.default_rng(3).integers(0, 2**32, size=400_000, dtype=np.uint64).astype(np.uint32)
    ties = ((np.arange(2**16, dtype=np.uint32) << 13) | 0x1000)  # exactly half-way between two fp16 values
    specials = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, -70000.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26,
                         np.inf, -np.inf, np.nan, 1e-40], dtype=np.float32)
    x = np.concatenate([bits.view(np.float32), ties.view(np.float32), specials])
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).astype(np.float32)
        got = round_to_fp16(x)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]
