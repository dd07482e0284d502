"""Indexing and generating MIL kernels: slice_by_index, slice_by_size, gather (+ _nd, _along_axis), select,
fill, range_1d, one_hot, band_part, topk, argsort, cumsum, non_zero, scatter_nd-free subset.

Negative indices count from the end, as in MIL.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    bool_list,
    int_list,
    kernel,
    norm_axis,
    scalar_bool,
    scalar_int,
)


@kernel("slice_by_index")
def slice_by_index(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    rank = x.ndim
    begin, end = int_list(a["begin"]), int_list(a["end"])
    stride = int_list(a["stride"]) if a.get("stride") is not None else [1] * rank
    begin_mask = bool_list(a.get("begin_mask"), rank)
    end_mask = bool_list(a.get("end_mask"), rank)
    squeeze_mask = bool_list(a.get("squeeze_mask"), rank)
    index: list[slice | int] = []
    for i in range(rank):
        if squeeze_mask[i]:
            index.append(begin[i])
            continue
        index.append(slice(None if begin_mask[i] else begin[i], None if end_mask[i] else end[i], stride[i]))
    return np.asarray(x[tuple(index)])


@kernel("slice_by_size")
def slice_by_size(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    begin, size = int_list(a["begin"]), int_list(a["size"])
    index = []
    for dim, b, s in zip(x.shape, begin, size):
        b = b + dim if b < 0 else b
        index.append(slice(b, dim if s == -1 else b + s))
    return x[tuple(index)]


def _flat_batch(x: NDArray[Any], indices: NDArray[Any], batch_dims: int) -> tuple[NDArray[Any], NDArray[Any], tuple[int, ...]]:
    batch_shape = x.shape[:batch_dims]
    nb = int(np.prod(batch_shape)) if batch_dims else 1
    return x.reshape((nb,) + x.shape[batch_dims:]), indices.reshape((nb,) + indices.shape[batch_dims:]), batch_shape


@kernel("gather")
def gather(a: Args) -> NDArray[Any]:
    x, indices = np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64)
    axis = norm_axis(a.get("axis", 0), x.ndim)
    batch_dims = scalar_int(a.get("batch_dims", 0))
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    # Batched gather: one take per flattened batch row (rows, not pixels; batch_dims > 0 is rare and small).
    xf, idf, batch_shape = _flat_batch(x, indices, batch_dims)
    rows = [np.take(xf[i], idf[i], axis=axis - batch_dims) for i in range(xf.shape[0])]
    out = np.stack(rows)
    return out.reshape(batch_shape + out.shape[1:])


@kernel("gather_nd")
def gather_nd(a: Args) -> NDArray[Any]:
    x, indices = np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64)
    batch_dims = scalar_int(a.get("batch_dims", 0))
    if batch_dims == 0:
        return x[tuple(np.moveaxis(indices, -1, 0))]
    xf, idf, batch_shape = _flat_batch(x, indices, batch_dims)
    rows = np.arange(xf.shape[0]).reshape((-1,) + (1,) * (idf.ndim - 2))
    out = xf[(rows,) + tuple(np.moveaxis(idf, -1, 0))]
    return out.reshape(batch_shape + out.shape[1:])


@kernel("gather_along_axis")
def gather_along_axis(a: Args) -> NDArray[Any]:
    x, indices = np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64)
    axis = norm_axis(a.get("axis", 0), x.ndim)
    indices = np.where(indices < 0, indices + x.shape[axis], indices)
    return np.take_along_axis(x, indices, axis=axis)


@kernel("select")
def select(a: Args) -> NDArray[Any]:
    return np.where(np.asarray(a["cond"]).astype(bool), a["a"], a["b"])


@kernel("fill")
def fill(a: Args) -> NDArray[Any]:
    return np.full(int_list(a["shape"]), a.get("value", 0.0))


@kernel("fill_like")
def fill_like(a: Args) -> NDArray[Any]:
    return np.full(np.shape(a["ref_tensor"]), a.get("value", 0.0))


@kernel("range_1d")
def range_1d(a: Args) -> NDArray[Any]:
    return np.arange(np.asarray(a["start"]).item(), np.asarray(a["end"]).item(), np.asarray(a["step"]).item())


@kernel("one_hot")
def one_hot(a: Args) -> NDArray[Any]:
    indices = np.asarray(a["indices"]).astype(np.int64)
    depth = scalar_int(a["one_hot_vector_size"])
    axis = scalar_int(a.get("axis", -1))
    on, off = np.asarray(a.get("on_value", 1)), np.asarray(a.get("off_value", 0))
    hot = indices[..., None] == np.arange(depth)
    out = np.where(hot, on, off)
    return np.moveaxis(out, -1, axis if axis >= 0 else out.ndim + axis)


@kernel("band_part")
def band_part(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    lower, upper = scalar_int(a.get("lower", -1)), scalar_int(a.get("upper", -1))
    m, n = x.shape[-2:]
    diff = np.arange(m)[:, None] - np.arange(n)[None, :]  # row - col: > 0 below the diagonal
    keep = np.ones((m, n), dtype=bool)
    if lower >= 0:
        keep &= diff <= lower
    if upper >= 0:
        keep &= -diff <= upper
    return np.where(keep, x, np.zeros((), dtype=x.dtype))


@kernel("topk")
def topk(a: Args) -> tuple[NDArray[Any], NDArray[Any]]:
    x = np.asarray(a["x"])
    k = scalar_int(a.get("k", 1))
    axis = norm_axis(a.get("axis", -1), x.ndim)
    ascending = scalar_bool(a.get("ascending", False))
    order = np.argsort(x if ascending else -x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int32)


@kernel("argsort")
def argsort(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    axis = norm_axis(a.get("axis", -1), x.ndim)
    ascending = scalar_bool(a.get("ascending", False))
    return np.argsort(x if ascending else -x, axis=axis, kind="stable").astype(np.int32)


@kernel("cumsum")
def cumsum(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    axis = norm_axis(a.get("axis", 0), x.ndim)
    exclusive, reverse = scalar_bool(a.get("exclusive", False)), scalar_bool(a.get("reverse", False))
    src = np.flip(x, axis) if reverse else x
    out = np.cumsum(src, axis=axis)
    if exclusive:
        out = out - src
    return np.flip(out, axis) if reverse else out


@kernel("non_zero")
def non_zero(a: Args) -> NDArray[Any]:
    return np.argwhere(np.asarray(a["x"])).astype(np.int32)


@kernel("crop")
def crop(a: Args) -> NDArray[Any]:
    """Removes ``crop_height`` = [top, bottom] rows and ``crop_width`` = [left, right] columns (last two dims)."""
    x = np.asarray(a["x"])
    top, bottom = int_list(a["crop_height"])
    left, right = int_list(a["crop_width"])
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
