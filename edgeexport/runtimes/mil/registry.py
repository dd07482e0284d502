"""Kernel registry of the numpy MIL executor: op type -> one small numpy function.

A kernel takes the op's named inputs (``args``: parameter name -> numpy array, Python scalar/str, or a list of
arrays for tuple parameters such as ``concat.values``; optional parameters the program left out are absent)
and returns one array or a tuple of arrays, one per op output. Kernels compute in whatever dtype they are given
(the executor hands fp16 tensors over as fp32) and the executor casts each result to the dtype the program
declares for that output, which is where fp16 rounding happens.

Kernel modules register themselves with :func:`kernel` when imported; :func:`kernels` imports every family
module once, so importing this module stays cheap (numpy only).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Args = dict[str, Any]
KernelResult = NDArray[Any] | tuple[NDArray[Any], ...]
Kernel = Callable[[Args], KernelResult]

# The op-family modules, in the order they are imported; each registers its kernels.
FAMILIES: tuple[str, ...] = (
    "elementwise",
    "activation",
    "conv",
    "linalg",
    "normalization",
    "tensor_shape",
    "tensor_index",
    "reduction",
    "constexpr",
    "quantization",
)

_KERNELS: dict[str, Kernel] = {}
_loaded = False


def kernel(*op_types: str) -> Callable[[Kernel], Kernel]:
    """Register the decorated function as the kernel of each MIL op type named."""

    def register(fn: Kernel) -> Kernel:
        for op_type in op_types:
            if op_type in _KERNELS and _KERNELS[op_type] is not fn:
                raise RuntimeError(f"two kernels registered for MIL op {op_type!r}")
            _KERNELS[op_type] = fn
        return fn

    return register


def kernels() -> dict[str, Kernel]:
    """Every registered kernel by MIL op type (imports the family modules on first call)."""
    global _loaded
    if not _loaded:
        for family in FAMILIES:
            importlib.import_module(f"edgeexport.runtimes.mil.{family}")
        _loaded = True
    return _KERNELS


# --- small argument helpers shared by the families ---------------------------------------------------------


def scalar_int(value: Any) -> int:
    """A MIL scalar int (0-d array, numpy or Python number) as a Python int."""
    return int(np.asarray(value).reshape(()))


def scalar_float(value: Any) -> float:
    """A MIL scalar float as a Python float."""
    return float(np.asarray(value).reshape(()))


def scalar_bool(value: Any) -> bool:
    """A MIL scalar bool as a Python bool."""
    return bool(np.asarray(value).reshape(()))


def scalar_str(value: Any) -> str:
    """A MIL scalar string (the loader gives ``str`` or a 0-d array of str)."""
    return str(np.asarray(value).reshape(()).item()) if not isinstance(value, str) else value


def int_list(value: Any) -> list[int]:
    """A MIL int vector (or scalar) as a list of Python ints."""
    return [int(v) for v in np.asarray(value).reshape(-1)]


def bool_list(value: Any, n: int) -> list[bool]:
    """A MIL bool vector as a list of ``n`` Python bools; absent (``None``) means all False."""
    if value is None:
        return [False] * n
    return [bool(v) for v in np.asarray(value).reshape(-1)]


def norm_axes(axes: Any, rank: int) -> tuple[int, ...]:
    """Axes given as an int or int vector (negative counts from the end) as sorted non-negative ints."""
    return tuple(sorted({a % rank if rank else 0 for a in int_list(axes)}))


def norm_axis(axis: Any, rank: int) -> int:
    """One axis (negative counts from the end) as a non-negative int for a tensor of ``rank``."""
    a = scalar_int(axis)
    return a + rank if a < 0 else a


def as_float(x: NDArray[Any]) -> NDArray[Any]:
    """``x`` as a floating array (ints become float32) for kernels that only make sense on floats."""
    arr = np.asarray(x)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float32)


def broadcast_shapes(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The numpy broadcast of ``shapes`` (MIL elementwise ops broadcast the same way)."""
    return tuple(np.broadcast_shapes(*shapes))
