"""Compile-time decompression MIL kernels (compressed weights), in their iOS16 and iOS18 forms.

iOS16 forms store packed bytes (``constexpr_lut_to_dense`` indices and ``constexpr_sparse_to_dense`` masks are
bit fields, least significant bit first) and carry the output ``shape``; coremltools' loader hands the iOS18
forms over unpacked (one uint8 per element, in the tensor's own shape), so those need no bit unpacking.
Block-wise parameters (iOS18) repeat over blocks of ``data.shape[i] / scale.shape[i]`` along each axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    int_list,
    kernel,
    norm_axis,
    scalar_int,
)


def _unpack_bits(packed: NDArray[Any], nbits: int, count: int) -> NDArray[Any]:
    """``count`` unsigned ``nbits``-bit fields packed LSB-first into bytes, as int64."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8).reshape(-1), bitorder="little")
    bits = bits[: count * nbits].reshape(count, nbits).astype(np.int64)
    return bits @ (1 << np.arange(nbits, dtype=np.int64))


def _blockwise(param: NDArray[Any], shape: tuple[int, ...]) -> NDArray[Any]:
    """Repeat a block-wise parameter (same rank as the tensor) to the full tensor ``shape``."""
    param = np.asarray(param)
    for axis, (n_blocks, size) in enumerate(zip(param.shape, shape)):
        if n_blocks != size:
            param = np.repeat(param, size // n_blocks, axis=axis)
    return param


# --- iOS16 -------------------------------------------------------------------------------------------------


@kernel("constexpr_affine_dequantize")
def constexpr_affine_dequantize(a: Args) -> NDArray[Any]:
    """``scale * (quantized_data - zero_point)``; vector scale/zero_point run along ``axis``."""
    q = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = norm_axis(a["axis"], q.ndim)

    def along(v: NDArray[Any]) -> NDArray[Any]:
        v = np.asarray(v).astype(np.float32)
        if v.ndim == 0 or v.size == 1:
            return v.reshape(())
        shape = [1] * q.ndim
        shape[axis] = -1
        return v.reshape(shape)

    return along(a["scale"]) * (q - along(a["zero_point"]))


@kernel("constexpr_cast")
def constexpr_cast(a: Args) -> NDArray[Any]:
    # The executor casts to the declared output dtype (output_dtype).
    return np.asarray(a["source_val"])


def _lut_to_dense_ios16(a: Args) -> NDArray[Any]:
    lut = np.asarray(a["lut"])
    shape = int_list(a["shape"])
    nbits = int(round(np.log2(lut.shape[0])))
    idx = _unpack_bits(a["indices"], nbits, int(np.prod(shape)))
    return lut[idx].reshape(shape)


def _lut_blocks(lut: NDArray[Any], shape: tuple[int, ...]) -> tuple[NDArray[Any], ...]:
    """Per-element index into the LUT's leading (block) dims, as open grids broadcasting to ``shape``."""
    k = len(shape)
    grids = []
    for axis in range(k):
        block = shape[axis] // lut.shape[axis]
        g = (np.arange(shape[axis]) // block).reshape([-1 if i == axis else 1 for i in range(k)])
        grids.append(g)
    return tuple(grids)


def lut_to_dense_ios18(indices: NDArray[Any], lut: NDArray[Any], vector_axis: int | None) -> NDArray[Any]:
    """iOS18 LUT decompression: ``lut`` is (*blocks, palettes, vector_size), ``indices`` unpacked."""
    indices = np.asarray(indices).astype(np.int64)
    lut = np.asarray(lut)
    vals = lut[_lut_blocks(lut, indices.shape) + (indices,)]  # indices.shape + (vector_size,)
    vec = lut.shape[-1]
    if vec == 1:
        return vals[..., 0]
    axis = vector_axis if vector_axis is not None else 0
    axis = axis + indices.ndim if axis < 0 else axis
    out_shape = list(indices.shape)
    out_shape[axis] *= vec
    return np.moveaxis(vals, -1, axis + 1).reshape(out_shape)


@kernel("constexpr_lut_to_dense")
def constexpr_lut_to_dense(a: Args) -> NDArray[Any]:
    if a.get("shape") is not None:
        return _lut_to_dense_ios16(a)
    vector_axis = scalar_int(a["vector_axis"]) if a.get("vector_axis") is not None else None
    return lut_to_dense_ios18(a["indices"], a["lut"], vector_axis)


@kernel("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(a: Args) -> NDArray[Any]:
    data = np.asarray(a["nonzero_data"])
    if a.get("shape") is not None:  # iOS16: packed bit mask + shape
        shape = int_list(a["shape"])
        mask = _unpack_bits(a["mask"], 1, int(np.prod(shape))).astype(bool).reshape(shape)
    else:  # iOS18: one 0/1 per element, already in the output's shape
        mask = np.asarray(a["mask"]).astype(bool)
    out = np.zeros(mask.shape, dtype=data.dtype)
    out[mask] = data  # row-major order of the set bits
    return out


# --- iOS18 -------------------------------------------------------------------------------------------------


def _shift_scale(data: NDArray[Any], scale: NDArray[Any], offset: NDArray[Any] | None) -> NDArray[Any]:
    d = np.asarray(data).astype(np.float32)
    if offset is not None:
        d = d - _blockwise(np.asarray(offset).astype(np.float32), d.shape)
    return d * _blockwise(np.asarray(scale).astype(np.float32), d.shape)


@kernel("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(a: Args) -> NDArray[Any]:
    """``scale * (data - offset)`` with block-wise scale/offset."""
    return _shift_scale(a["data"], a["scale"], a.get("offset"))


@kernel("constexpr_lut_to_sparse")
def constexpr_lut_to_sparse(a: Args) -> tuple[NDArray[Any], NDArray[Any]]:
    """Palettized sparse data: returns (mask of the decompressed values, decompressed nonzero values)."""
    mask = np.asarray(a["indices_mask"]).astype(bool)
    dense_idx = np.zeros(mask.shape, dtype=np.int64)
    dense_idx[mask] = np.asarray(a["indices_nonzero_data"]).astype(np.int64)
    vector_axis = scalar_int(a["vector_axis"]) if a.get("vector_axis") is not None else None
    lut = np.asarray(a["lut"])
    dense = lut_to_dense_ios18(dense_idx, lut, vector_axis)
    vec = lut.shape[-1]
    if vec > 1:
        axis = (vector_axis or 0) % mask.ndim
        mask = np.repeat(mask, vec, axis=axis)
    return mask.astype(np.uint8), dense[mask]


@kernel("constexpr_sparse_blockwise_shift_scale")
def constexpr_sparse_blockwise_shift_scale(a: Args) -> tuple[NDArray[Any], NDArray[Any]]:
    """Quantized sparse data: returns (the mask unchanged, dequantized nonzero values)."""
    mask = np.asarray(a["data_mask"]).astype(bool)
    dense = np.zeros(mask.shape, dtype=np.float32)
    dense[mask] = np.asarray(a["nonzero_data"]).astype(np.float32)
    deq = _shift_scale(dense, a["scale"], a.get("offset"))
    return mask.astype(np.uint8), deq[mask]
