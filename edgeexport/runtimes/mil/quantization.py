"""Activation (de)quantization MIL kernels (iOS17 ``quantize`` / ``dequantize``), as w8a8 programs use them.

``quantize``: ``clip(round(input / scale) + zero_point)`` into ``output_dtype`` (int8 or uint8), rounding half to
even like Core ML's CPU path; ``dequantize``: ``scale * (input - zero_point)``. A vector ``scale``/``zero_point``
runs along ``axis``; ``zero_point`` defaults to 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import Args, kernel, norm_axis

_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def _along(value: object, rank: int, axis: object) -> NDArray[Any]:
    """A per-tensor (scalar) or per-channel (vector along ``axis``) parameter, broadcastable to the input."""
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 0 or array.size == 1:
        return array.reshape(())
    shape = [1] * rank
    shape[norm_axis(axis if axis is not None else 0, rank)] = -1
    return array.reshape(shape)


@kernel("quantize")
def quantize(a: Args) -> NDArray[Any]:
    x = np.asarray(a["input"], dtype=np.float32)
    dtype = str(a["output_dtype"])
    low, high = _RANGES[dtype]
    scale = _along(a["scale"], x.ndim, a.get("axis"))
    zero = _along(a.get("zero_point", 0), x.ndim, a.get("axis"))
    return np.clip(np.rint(x / scale) + zero, low, high).astype(dtype)


@kernel("dequantize")
def dequantize(a: Args) -> NDArray[Any]:
    q = np.asarray(a["input"])
    scale = _along(a["scale"], q.ndim, a.get("axis"))
    zero = _along(a.get("zero_point", 0), q.ndim, a.get("axis"))
    return (scale * (q.astype(np.float32) - zero)).astype(np.float32)
