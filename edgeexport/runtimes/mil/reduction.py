"""Reduction MIL kernels (reduce_sum, _mean, _max, _min, _prod, _l1_norm, _l2_norm, _log_sum, _log_sum_exp,
_sum_square, _argmax, _argmin). ``axes`` absent means all axes; ``keep_dims`` defaults to False."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    as_float,
    kernel,
    norm_axes,
    norm_axis,
    scalar_bool,
)


def _reducer(fn: Callable[[NDArray[Any], tuple[int, ...], bool], NDArray[Any]], floats: bool) -> Callable[[Args], NDArray[Any]]:
    def run(a: Args) -> NDArray[Any]:
        x = as_float(a["x"]) if floats else np.asarray(a["x"])
        axes = norm_axes(a["axes"], x.ndim) if a.get("axes") is not None else tuple(range(x.ndim))
        return np.asarray(fn(x, axes, scalar_bool(a.get("keep_dims", False))))

    return run


def _log_sum_exp(x: NDArray[Any], axes: tuple[int, ...], keep: bool) -> NDArray[Any]:
    m = np.max(x, axis=axes, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keep else np.squeeze(out, axis=axes)


for _name, _fn, _floats in (
    ("reduce_sum", lambda x, ax, k: np.sum(x, axis=ax, keepdims=k), False),
    ("reduce_mean", lambda x, ax, k: np.mean(x, axis=ax, keepdims=k), True),
    ("reduce_max", lambda x, ax, k: np.max(x, axis=ax, keepdims=k), False),
    ("reduce_min", lambda x, ax, k: np.min(x, axis=ax, keepdims=k), False),
    ("reduce_prod", lambda x, ax, k: np.prod(x, axis=ax, keepdims=k), False),
    ("reduce_l1_norm", lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k), True),
    ("reduce_l2_norm", lambda x, ax, k: np.sqrt(np.sum(x * x, axis=ax, keepdims=k)), True),
    ("reduce_log_sum", lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k)), True),
    ("reduce_log_sum_exp", _log_sum_exp, True),
    ("reduce_sum_square", lambda x, ax, k: np.sum(x * x, axis=ax, keepdims=k), True),
):
    kernel(_name)(_reducer(_fn, _floats))  # type: ignore[arg-type]  # numpy's reductions differ only in stubs


def _arg(fn: Callable[..., NDArray[Any]]) -> Callable[[Args], NDArray[Any]]:
    def run(a: Args) -> NDArray[Any]:
        x = np.asarray(a["x"])
        axis = norm_axis(a.get("axis", -1), x.ndim)
        out = fn(x, axis=axis)
        if scalar_bool(a.get("keep_dims", False)):
            out = np.expand_dims(out, axis)
        return np.asarray(out, dtype=np.int32)

    return run


kernel("reduce_argmax")(_arg(np.argmax))
kernel("reduce_argmin")(_arg(np.argmin))
