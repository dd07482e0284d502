"""Shape-changing MIL kernels: reshape, transpose, concat, split, stack, squeeze, expand_dims, tile, pad,
cast, shape, reverse, flatten2d, reshape_like, depth_to_space, space_to_depth.

These are pure data movement; ``cast`` only passes the tensor through because the executor converts every
op output to the dtype the program declares (so ``cast`` to fp16 rounds exactly like any fp16 op output).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    int_list,
    kernel,
    norm_axes,
    norm_axis,
    scalar_bool,
    scalar_float,
    scalar_int,
    scalar_str,
)


@kernel("reshape")
def reshape(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    shape = int_list(a["shape"])
    if len(shape) == x.ndim:
        # MIL: 0 inherits the input's dimension when the target rank equals the input rank.
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


@kernel("reshape_like")
def reshape_like(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    shape: list[int] = []
    for ref, begin, end, end_mask in zip(a["ref_tensors"], int_list(a["begins"]), int_list(a["ends"]),
                                         [bool(v) for v in np.asarray(a["end_masks"]).reshape(-1)]):
        dims = np.asarray(ref).shape
        shape.extend(dims[begin:] if end_mask else dims[begin:end])
    return x.reshape(shape)


@kernel("transpose")
def transpose(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    return np.transpose(x, [p % x.ndim for p in int_list(a["perm"])]) if x.ndim else x


@kernel("concat")
def concat(a: Args) -> NDArray[Any]:
    values = [np.asarray(v) for v in a["values"]]
    axis = norm_axis(a["axis"], values[0].ndim)
    if scalar_bool(a.get("interleave", False)):
        # Interleave: slice i of every input in turn, i.e. stack after the axis then merge the two axes.
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] = -1
        return stacked.reshape(shape)
    return np.concatenate(values, axis=axis)


@kernel("stack")
def stack(a: Args) -> NDArray[Any]:
    values = [np.asarray(v) for v in a["values"]]
    return np.stack(values, axis=scalar_int(a["axis"]))


@kernel("split")
def split(a: Args) -> tuple[NDArray[Any], ...]:
    x = np.asarray(a["x"])
    axis = norm_axis(a["axis"], x.ndim)
    if a.get("split_sizes") is not None:
        sizes = int_list(a["split_sizes"])
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
    return tuple(np.split(x, scalar_int(a["num_splits"]), axis=axis))


@kernel("squeeze")
def squeeze(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    if a.get("axes") is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=norm_axes(a["axes"], x.ndim))


@kernel("expand_dims")
def expand_dims(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    out_rank = x.ndim + len(int_list(a["axes"]))
    return np.expand_dims(x, axis=norm_axes(a["axes"], out_rank))


@kernel("tile")
def tile(a: Args) -> NDArray[Any]:
    return np.tile(np.asarray(a["x"]), int_list(a["reps"]))


@kernel("pad")
def pad(a: Args) -> NDArray[Any]:
    """Pads the last ``len(pad) / 2`` dims; modes constant (``constant_val``, default 0), reflect, replicate."""
    x = np.asarray(a["x"])
    p = int_list(a["pad"])
    n = len(p) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    mode = scalar_str(a.get("mode", "constant"))
    if mode == "constant":
        return np.pad(x, widths, constant_values=scalar_float(a.get("constant_val", 0.0)))
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise NotImplementedError(f"pad mode {mode!r} is not one of constant, reflect, replicate")


@kernel("cast")
def cast(a: Args) -> NDArray[Any]:
    return np.asarray(a["x"])


@kernel("shape")
def shape(a: Args) -> NDArray[Any]:
    return np.asarray(np.shape(a["x"]), dtype=np.int32)


@kernel("reverse")
def reverse(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    axes = norm_axes(a["axes"], x.ndim) if a.get("axes") is not None else tuple(range(x.ndim))
    return np.flip(x, axis=axes)


@kernel("flatten2d")
def flatten2d(a: Args) -> NDArray[Any]:
    x = np.asarray(a["x"])
    axis = norm_axis(a.get("axis", 1), x.ndim)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@kernel("depth_to_space")
def depth_to_space(a: Args) -> NDArray[Any]:
    """(N, C*b*b, H, W) -> (N, C, H*b, W*b), depth taken in (b_row, b_col, C) order as TF's DepthToSpace."""
    x = np.asarray(a["x"])
    b = scalar_int(a["block_size"])
    n, c, h, w = x.shape
    y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@kernel("space_to_depth")
def space_to_depth(a: Args) -> NDArray[Any]:
    """(N, C, H*b, W*b) -> (N, C*b*b, H, W), the inverse of ``depth_to_space``."""
    x = np.asarray(a["x"])
    b = scalar_int(a["block_size"])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)
