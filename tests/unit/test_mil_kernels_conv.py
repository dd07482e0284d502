"""Conv and pooling kernels of the MIL executor against direct loop implementations written here.

The references are deliberately naive (Python loops over every output pixel) and share no code with the
kernels, which are vectorized. Layout is MIL's: (N, C, *spatial), weights (C_out, C_in/groups, *K).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgeexport.runtimes.mil.registry import kernels

K = kernels()
RNG = np.random.default_rng(0)


def ref_pads(pad_type: str, in_sizes, ksz, strides, dilations, custom=None):
    out = []
    for i, (n, k, s, d) in enumerate(zip(in_sizes, ksz, strides, dilations)):
        if pad_type == "valid":
            out.append((0, 0))
        elif pad_type == "custom":
            out.append((custom[2 * i], custom[2 * i + 1]))
        else:
            eff = (k - 1) * d + 1
            total = max((math.ceil(n / s) - 1) * s + eff - n, 0)
            lo = total // 2 if pad_type == "same" else (total + 1) // 2
            out.append((lo, total - lo))
    return out


def ref_conv(x, w, b, strides, dilations, pads, groups):
    n, c = x.shape[:2]
    cout, cg = w.shape[:2]
    ksz = w.shape[2:]
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + pads)
    out_sizes = [(xp.shape[2 + i] - ((ksz[i] - 1) * dilations[i] + 1)) // strides[i] + 1 for i in range(len(ksz))]
    y = np.zeros((n, cout, *out_sizes))
    og = cout // groups
    for bi in range(n):
        for o in range(cout):
            g = o // og
            for pos in itertools.product(*(range(s) for s in out_sizes)):
                acc = 0.0
                for ci in range(cg):
                    for tap in itertools.product(*(range(k) for k in ksz)):
                        idx = tuple(p * s + t * d for p, s, t, d in zip(pos, strides, tap, dilations))
                        acc += xp[(bi, g * cg + ci) + idx] * w[(o, ci) + tap]
                y[(bi, o) + pos] = acc + (b[o] if b is not None else 0.0)
    return y


CONV_CASES = [
    # (spatial, c_in, c_out, kernel, strides, dilations, groups, pad_type, custom pad)
    ((7, 9), 3, 4, (3, 3), (1, 1), (1, 1), 1, "valid", None),
    ((7, 9), 3, 4, (3, 3), (2, 2), (1, 1), 1, "same", None),
    ((8, 8), 3, 4, (3, 2), (2, 1), (1, 1), 1, "same_lower", None),
    ((7, 9), 4, 6, (3, 3), (1, 2), (2, 1), 2, "custom", [1, 2, 0, 3]),
    ((9, 9), 6, 6, (3, 3), (2, 2), (1, 1), 6, "same", None),  # depthwise
    ((9, 9), 3, 6, (5, 5), (1, 1), (2, 2), 3, "same", None),  # depthwise, multiplier 2, dilated
    ((6, 5), 4, 8, (1, 1), (2, 2), (1, 1), 1, "valid", None),  # pointwise, strided
    ((6, 5), 4, 8, (1, 1), (1, 1), (1, 1), 2, "valid", None),  # grouped pointwise
    ((11,), 3, 5, (3,), (2,), (2,), 1, "same", None),  # 1-D
    ((4, 5, 6), 2, 3, (2, 3, 2), (1, 2, 1), (1, 1, 2), 1, "custom", [1, 0, 1, 1, 0, 2]),  # 3-D
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"{c[7]}-g{c[6]}-k{c[3]}" for c in CONV_CASES])
def test_conv_matches_direct_loops(case) -> None:
    spatial, cin, cout, ksz, strides, dil, groups, pad_type, custom = case
    x = RNG.normal(size=(2, cin, *spatial)).astype(np.float32)
    w = RNG.normal(size=(cout, cin // groups, *ksz)).astype(np.float32)
    b = RNG.normal(size=(cout,)).astype(np.float32)
    args = {"x": x, "weight": w, "bias": b, "strides": np.array(strides), "dilations": np.array(dil),
            "groups": np.int32(groups), "pad_type": pad_type}
    if custom is not None:
        args["pad"] = np.array(custom)
    got = K["conv"](args)
    want = ref_conv(x, w, b, strides, dil, ref_pads(pad_type, spatial, ksz, strides, dil, custom), groups)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv_same_output_size_is_ceil_of_input_over_stride() -> None:
    x = RNG.normal(size=(1, 2, 13, 10)).astype(np.float32)
    w = RNG.normal(size=(3, 2, 4, 4)).astype(np.float32)
    got = K["conv"]({"x": x, "weight": w, "strides": np.array([3, 4]), "pad_type": "same"})
    assert got.shape == (1, 3, 5, 3)


def ref_conv_transpose(x, w, strides, pads_begin, out_sizes):
    n, cin = x.shape[:2]
    cout = w.shape[1]
    kh, kw = w.shape[2:]
    full = np.zeros((n, cout, (x.shape[2] - 1) * strides[0] + kh, (x.shape[3] - 1) * strides[1] + kw))
    for bi, ci, i, j in itertools.product(range(n), range(cin), range(x.shape[2]), range(x.shape[3])):
        full[bi, :, i * strides[0]: i * strides[0] + kh, j * strides[1]: j * strides[1] + kw] += x[bi, ci, i, j] * w[ci]
    return full[:, :, pads_begin[0]: pads_begin[0] + out_sizes[0], pads_begin[1]: pads_begin[1] + out_sizes[1]]


@pytest.mark.parametrize("pad_type, custom", [("valid", None), ("same", None), ("custom", [1, 1, 0, 1])])
def test_conv_transpose_matches_scatter_loops(pad_type: str, custom) -> None:
    x = RNG.normal(size=(1, 3, 4, 5)).astype(np.float32)
    w = RNG.normal(size=(3, 2, 3, 3)).astype(np.float32)
    args = {"x": x, "weight": w, "strides": np.array([2, 2]), "pad_type": pad_type}
    full = ((4 - 1) * 2 + 3, (5 - 1) * 2 + 3)
    if pad_type == "valid":
        begin, sizes = (0, 0), full
    elif pad_type == "same":
        sizes = (8, 10)
        begin = tuple((f - s) // 2 for f, s in zip(full, sizes))
    else:
        args["pad"] = np.array(custom)
        begin = (custom[0], custom[2])
        sizes = (full[0] - custom[0] - custom[1], full[1] - custom[2] - custom[3])
    got = K["conv_transpose"](args)
    np.testing.assert_allclose(got, ref_conv_transpose(x, w, (2, 2), begin, sizes), rtol=1e-4, atol=1e-4)


def ref_pool(x, mode, ksz, strides, pads, ceil_mode, exclude_padding):
    """Direct loops: windows clipped to input (+ explicit padding unless excluded); ceil windows may overhang."""
    n, c, h, w = x.shape
    outs = []
    for size, k, s, (lo, hi) in zip((h, w), ksz, strides, pads):
        span = size + lo + hi - k
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + lo:
            o -= 1
        outs.append(o)
    y = np.zeros((n, c, *outs))
    for i, j in itertools.product(range(outs[0]), range(outs[1])):
        r0, c0 = i * strides[0] - pads[0][0], j * strides[1] - pads[1][0]
        r1, c1 = r0 + ksz[0], c0 + ksz[1]
        rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
        win = x[:, :, rr0:rr1, cc0:cc1]
        if mode == "max":
            y[:, :, i, j] = win.max(axis=(2, 3))
        elif mode == "l2":
            y[:, :, i, j] = np.sqrt((win.astype(np.float64) ** 2).sum(axis=(2, 3)))
        else:
            if exclude_padding:
                count = (rr1 - rr0) * (cc1 - cc0)
            else:  # explicit padding counts, the ceil overhang past it does not
                count = (min(r1, h + pads[0][1]) - r0) * (min(c1, w + pads[1][1]) - c0)
            y[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return y


POOL_CASES = [
    ("max", (3, 3), (2, 2), "valid", None, False, False),
    ("max", (3, 3), (2, 2), "same", None, False, False),
    ("max", (2, 2), (2, 2), "valid", None, True, False),
    ("avg", (3, 3), (2, 2), "same", None, False, True),
    ("avg", (3, 3), (2, 2), "same", None, False, False),
    ("avg", (3, 2), (2, 3), "custom", [1, 1, 1, 0], False, False),
    ("avg", (3, 2), (2, 3), "custom", [1, 1, 1, 0], False, True),
    ("avg", (3, 3), (2, 2), "valid", None, True, True),
    ("avg", (3, 3), (2, 2), "custom", [1, 0, 1, 0], True, False),
    ("l2", (2, 2), (1, 1), "valid", None, False, False),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[f"{c[0]}-{c[3]}-ceil{c[5]}-excl{c[6]}" for c in POOL_CASES])
def test_pools_match_direct_loops(case) -> None:
    mode, ksz, strides, pad_type, custom, ceil_mode, exclude = case
    x = RNG.normal(size=(2, 3, 8, 7)).astype(np.float32)
    args = {"x": x, "kernel_sizes": np.array(ksz), "strides": np.array(strides), "pad_type": pad_type,
            "ceil_mode": ceil_mode, "exclude_padding_from_average": exclude}
    if custom is not None:
        args["pad"] = np.array(custom)
    got = K[f"{mode}_pool"](args)
    want = ref_pool(x, mode, ksz, strides, ref_pads(pad_type, (8, 7), ksz, strides, (1, 1), custom), ceil_mode,
                    exclude)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_max_pool_never_picks_padding_over_negative_inputs() -> None:
    x = -np.ones((1, 1, 4, 4), dtype=np.float32) - RNG.uniform(size=(1, 1, 4, 4)).astype(np.float32)
    got = K["max_pool"]({"x": x, "kernel_sizes": np.array([3, 3]), "strides": np.array([1, 1]),
                         "pad_type": "same"})
    assert got.max() < -1.0
