"""Linear-algebra MIL kernels: ``matmul`` (numpy broadcasting semantics, optional transposes of the last two
dims), ``linear`` (``x @ weight.T + bias``, weight stored as (D_out, D_in)) and ``einsum``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    as_float,
    kernel,
    scalar_bool,
    scalar_str,
)


@kernel("matmul")
def matmul(a: Args) -> NDArray[Any]:
    x, y = np.asarray(a["x"]), np.asarray(a["y"])
    if scalar_bool(a.get("transpose_x", False)) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if scalar_bool(a.get("transpose_y", False)) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.asarray(np.matmul(x, y))


@kernel("linear")
def linear(a: Args) -> NDArray[Any]:
    x, w = as_float(a["x"]), as_float(a["weight"])
    out = np.matmul(x, w.T)
    bias = a.get("bias")
    return out + np.asarray(bias) if bias is not None else out


@kernel("einsum")
def einsum(a: Args) -> NDArray[Any]:
    values = [as_float(v) for v in a["values"]]
    return np.asarray(np.einsum(scalar_str(a["equation"]), *values, optimize=True))
