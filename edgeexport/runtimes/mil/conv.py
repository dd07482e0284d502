"""Convolution and pooling MIL kernels, channel-first (``N, C, *spatial``) as MIL lays them out, any rank 1-3.

Everything is vectorized over batch, channels and pixels: a dense or grouped convolution is an im2col
(a strided window view copied once) followed by one batched matmul; 1x1 convolutions skip the im2col;
depthwise convolutions and pools loop only over the kernel taps (9 for a 3x3 kernel), each tap one strided
slice of the whole tensor.

Padding (``pad_type``): ``valid`` none; ``custom`` from ``pad`` as ``[begin0, end0, begin1, end1, ...]``;
``same`` pads so that ``out = ceil(in / stride)``, the odd pixel at the end; ``same_lower`` puts it first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    as_float,
    int_list,
    kernel,
    scalar_bool,
    scalar_float,
    scalar_int,
    scalar_str,
)

Pads = list[tuple[int, int]]


def spatial_pads(
    pad_type: str,
    pad: Sequence[int] | None,
    in_sizes: Sequence[int],
    kernel_sizes: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> Pads:
    """(begin, end) padding per spatial dim for a MIL ``pad_type``."""
    nd = len(in_sizes)
    if pad_type == "valid":
        return [(0, 0)] * nd
    if pad_type == "custom":
        p = list(pad) if pad is not None else [0] * (2 * nd)
        return [(p[2 * i], p[2 * i + 1]) for i in range(nd)]
    if pad_type in ("same", "same_lower"):
        pads: Pads = []
        for size, k, s, d in zip(in_sizes, kernel_sizes, strides, dilations):
            out = math.ceil(size / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if pad_type == "same" else (large, small))
        return pads
    raise NotImplementedError(f"pad_type {pad_type!r}")


def _out_sizes(padded: Sequence[int], kernel_sizes: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> list[int]:
    return [(p - ((k - 1) * d + 1)) // s + 1 for p, k, s, d in zip(padded, kernel_sizes, strides, dilations)]


def _taps(xp: NDArray[Any], kernel_sizes: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
          out_sizes: Sequence[int]) -> Iterator[tuple[tuple[int, ...], NDArray[Any]]]:
    """For each kernel tap, the strided view of ``xp`` (N, C, *spatial) that the tap multiplies."""
    for tap in itertools.product(*(range(k) for k in kernel_sizes)):
        index = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, s, o in zip(tap, dilations, strides, out_sizes)
        )
        yield tap, xp[index]


def conv_nd(x: NDArray[Any], w: NDArray[Any], strides: Sequence[int], dilations: Sequence[int], pads: Pads,
            groups: int) -> NDArray[Any]:
    """Cross-correlation of ``x`` (N, C, *S) with ``w`` (C_out, C/groups, *K): MIL/PyTorch conv semantics."""
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + list(pads)) if any(p != (0, 0) for p in pads) else x
    n, c = xp.shape[:2]
    c_out, cg = w.shape[:2]
    ksz = w.shape[2:]
    out_sizes = _out_sizes(xp.shape[2:], ksz, strides, dilations)
    og = c_out // groups
    if groups == c and cg == 1:
        # Depthwise (channel multiplier og): repeat each input channel og times, then one multiply-add per tap.
        src = np.repeat(xp, og, axis=1) if og > 1 else xp
        acc = np.zeros((n, c_out, *out_sizes), dtype=np.result_type(xp, w))
        product = np.empty_like(acc)  # reused by every tap: no allocation inside the loop
        for tap, view in _taps(src, ksz, strides, dilations, out_sizes):
            np.multiply(view, w[(slice(None), 0) + tap].reshape((1, c_out) + (1,) * nd), out=product)
            acc += product
        return acc
    if all(k == 1 for k in ksz):
        index = (slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_sizes, strides))
        cols = xp[index].reshape(n, groups, cg, -1)
        wm = w.reshape(groups, og, cg)
    else:
        extents = [(k - 1) * d + 1 for k, d in zip(ksz, dilations)]
        win = sliding_window_view(xp, tuple(extents), axis=tuple(range(2, 2 + nd)))  # type: ignore[call-overload]  # numpy's stub takes one axis; the function takes a tuple
        index = (slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_sizes, strides))
        index += tuple(slice(None, None, d) for d in dilations)
        win = win[index]  # (N, C, *O, *K)
        win = win.reshape((n, groups, cg) + win.shape[2:])
        perm = (0, 1, 2) + tuple(range(3 + nd, 3 + 2 * nd)) + tuple(range(3, 3 + nd))
        cols = win.transpose(perm).reshape(n, groups, cg * int(np.prod(ksz)), -1)
        wm = w.reshape(groups, og, -1)
    out = np.matmul(wm, cols)  # (N, G, og, P)
    return out.reshape(n, c_out, *out_sizes)


def _conv_params(a: Args, x: NDArray[Any], ksz: Sequence[int]) -> tuple[list[int], list[int], Pads, int]:
    nd = x.ndim - 2
    strides = int_list(a.get("strides", [1] * nd))
    dilations = int_list(a.get("dilations", [1] * nd))
    groups = scalar_int(a.get("groups", 1))
    pad = int_list(a["pad"]) if a.get("pad") is not None else None
    pads = spatial_pads(scalar_str(a.get("pad_type", "valid")), pad, x.shape[2:], ksz, strides, dilations)
    return strides, dilations, pads, groups


def _add_bias(out: NDArray[Any], bias: NDArray[Any] | None) -> NDArray[Any]:
    if bias is None:
        return out
    return out + np.asarray(bias).reshape((1, -1) + (1,) * (out.ndim - 2))


@kernel("conv")
def conv(a: Args) -> NDArray[Any]:
    x, w = as_float(a["x"]), as_float(a["weight"])
    strides, dilations, pads, groups = _conv_params(a, x, w.shape[2:])
    return _add_bias(conv_nd(x, w, strides, dilations, pads, groups), a.get("bias"))


@kernel("conv_transpose")
def conv_transpose(a: Args) -> NDArray[Any]:
    """Transposed conv; ``weight`` is (C_in, C_out/groups, *K) as MIL defines it."""
    x, w = as_float(a["x"]), as_float(a["weight"])
    nd = x.ndim - 2
    n, c_in = x.shape[:2]
    ksz = w.shape[2:]
    strides = int_list(a.get("strides", [1] * nd))
    dilations = int_list(a.get("dilations", [1] * nd))
    groups = scalar_int(a.get("groups", 1))
    cgi, og = c_in // groups, w.shape[1]
    full = [(i - 1) * s + (k - 1) * d + 1 for i, s, k, d in zip(x.shape[2:], strides, ksz, dilations)]
    acc = np.zeros((n, groups * og, *full), dtype=np.result_type(x, w))
    xg = x.reshape(n, groups, cgi, -1)
    wg = w.reshape(groups, cgi, og, -1)
    for t_index, tap in enumerate(itertools.product(*(range(k) for k in ksz))):
        contrib = np.matmul(wg[..., t_index].transpose(0, 2, 1), xg).reshape(n, groups * og, *x.shape[2:])
        index = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + (i - 1) * s + 1, s) for t, d, s, i in zip(tap, dilations, strides, x.shape[2:])
        )
        acc[index] += contrib
    pad_type = scalar_str(a.get("pad_type", "valid"))
    if pad_type == "custom":
        p = int_list(a["pad"])
        begins = [p[2 * i] for i in range(nd)]
        sizes = [f - p[2 * i] - p[2 * i + 1] for i, f in enumerate(full)]
    elif pad_type in ("same", "same_lower"):
        sizes = [i * s for i, s in zip(x.shape[2:], strides)]
        totals = [f - o for f, o in zip(full, sizes)]
        begins = [t // 2 if pad_type == "same" else t - t // 2 for t in totals]
    else:
        begins, sizes = [0] * nd, list(full)
    if a.get("output_shape") is not None:
        sizes = int_list(a["output_shape"])[-nd:]
    out = np.zeros((n, groups * og, *sizes), dtype=acc.dtype)
    src = (slice(None), slice(None)) + tuple(slice(b, min(b + s, f)) for b, s, f in zip(begins, sizes, full))
    dst = (slice(None), slice(None)) + tuple(slice(0, min(b + s, f) - b) for b, s, f in zip(begins, sizes, full))
    out[dst] = acc[src]
    return _add_bias(out, a.get("bias"))


def _pool(a: Args, mode: str) -> NDArray[Any]:
    x = as_float(a["x"])
    nd = x.ndim - 2
    ksz = int_list(a["kernel_sizes"])
    strides = int_list(a.get("strides", [1] * nd))
    ones = [1] * nd
    pad = int_list(a["pad"]) if a.get("pad") is not None else None
    pads = spatial_pads(scalar_str(a.get("pad_type", "valid")), pad, x.shape[2:], ksz, strides, ones)
    ceil_mode = scalar_bool(a.get("ceil_mode", False))
    out_sizes, extra = [], []
    for size, (b, e), k, s in zip(x.shape[2:], pads, ksz, strides):
        padded = size + b + e
        if ceil_mode:
            out = -(-(padded - k) // s) + 1
            if (out - 1) * s >= size + b:  # a window may not start in the end padding
                out -= 1
        else:
            out = (padded - k) // s + 1
        out_sizes.append(out)
        extra.append(max((out - 1) * s + k - padded, 0))
    full_pads = [(0, 0), (0, 0)] + [(b, e + x_) for (b, e), x_ in zip(pads, extra)]
    if mode == "max":
        xp = np.pad(x, full_pads, constant_values=-np.inf)
        acc = None
        for _, view in _taps(xp, ksz, strides, ones, out_sizes):
            acc = view.copy() if acc is None else np.maximum(acc, view, out=acc)
        assert acc is not None
        return acc
    src = x * x if mode == "l2" else x
    xp = np.pad(src, full_pads)
    acc = np.zeros(x.shape[:2] + tuple(out_sizes), dtype=x.dtype)
    for _, view in _taps(xp, ksz, strides, ones, out_sizes):
        acc += view
    if mode == "l2":
        return np.sqrt(acc)
    # Divisor per output pixel: the window's cells inside the input (exclude_padding) or inside input + explicit
    # padding; the extra cells ceil_mode adds past the end never count.
    exclude = scalar_bool(a.get("exclude_padding_from_average", False))
    mask = np.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    if exclude:
        mask = np.pad(mask, full_pads)
    else:
        mask = np.pad(np.pad(mask, [(0, 0), (0, 0)] + list(pads), constant_values=1),
                      [(0, 0), (0, 0)] + [(0, x_) for x_ in extra])
    count = np.zeros((1, 1) + tuple(out_sizes), dtype=x.dtype)
    for _, view in _taps(mask, ksz, strides, ones, out_sizes):
        count += view
    return acc / np.maximum(count, 1)


@kernel("max_pool")
def max_pool(a: Args) -> NDArray[Any]:
    return _pool(a, "max")


@kernel("avg_pool")
def avg_pool(a: Args) -> NDArray[Any]:
    return _pool(a, "avg")


@kernel("l2_pool")
def l2_pool(a: Args) -> NDArray[Any]:
    return _pool(a, "l2")


@kernel("upsample_nearest_neighbor")
def upsample_nearest_neighbor(a: Args) -> NDArray[Any]:
    """Integer scale factors only (the case Keras UpSampling2D produces)."""
    x = np.asarray(a["x"])
    sh, sw = scalar_float(a.get("scale_factor_height", 1)), scalar_float(a.get("scale_factor_width", 1))
    if sh != int(sh) or sw != int(sw):
        raise NotImplementedError("only integer scale factors are implemented")
    return np.repeat(np.repeat(x, int(sh), axis=-2), int(sw), axis=-1)


def _linear_grid(size_in: int, size_out: int, align_corners: bool) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Source indices (lower, upper) and weights of the upper one for 1-D linear resampling (MIL's grid)."""
    i = np.arange(size_out, dtype=np.float64)
    if align_corners:
        grid = i * ((size_in - 1) / (size_out - 1)) if size_out > 1 else np.zeros(size_out)
    else:
        spacing = size_in / size_out
        grid = i * spacing + 0.5 * spacing - 0.5
    grid = np.clip(grid, 0, size_in - 1)
    lower = np.floor(grid).astype(np.int64)
    upper = np.minimum(lower + 1, size_in - 1)
    return lower, upper, (grid - lower).astype(np.float32)


def _bilinear(x: NDArray[Any], out_h: int, out_w: int, align_corners: bool) -> NDArray[Any]:
    h0, h1, fh = _linear_grid(x.shape[-2], out_h, align_corners)
    w0, w1, fw = _linear_grid(x.shape[-1], out_w, align_corners)
    rows = x[..., h0, :] * (1 - fh)[:, None] + x[..., h1, :] * fh[:, None]
    return rows[..., w0] * (1 - fw) + rows[..., w1] * fw


@kernel("upsample_bilinear")
def upsample_bilinear(a: Args) -> NDArray[Any]:
    """Output size floor(in * scale); samples on MIL's grid (align_corners default True, as MIL's)."""
    x = as_float(a["x"])
    sh, sw = scalar_float(a.get("scale_factor_height", 1)), scalar_float(a.get("scale_factor_width", 1))
    out_h, out_w = int(math.floor(x.shape[-2] * sh)), int(math.floor(x.shape[-1] * sw))
    return _bilinear(x, out_h, out_w, scalar_bool(a.get("align_corners", True)))


@kernel("resize_nearest_neighbor")
def resize_nearest_neighbor(a: Args) -> NDArray[Any]:
    """Half-pixel nearest sampling (TF2 ``tf.image.resize(method="nearest")``): src = floor((i + 0.5) * in/out)."""
    x = np.asarray(a["x"])
    out_h, out_w = scalar_int(a["target_size_height"]), scalar_int(a["target_size_width"])
    rows = np.minimum(np.floor((np.arange(out_h) + 0.5) * x.shape[-2] / out_h).astype(np.int64), x.shape[-2] - 1)
    cols = np.minimum(np.floor((np.arange(out_w) + 0.5) * x.shape[-1] / out_w).astype(np.int64), x.shape[-1] - 1)
    return x[..., rows, :][..., cols]
