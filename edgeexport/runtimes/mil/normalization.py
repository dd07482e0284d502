"""Normalization MIL kernels: batch_norm, layer_norm, instance_norm, l2_norm, local_response_norm.

Channel-first as in MIL: ``batch_norm`` and ``instance_norm`` scale channel axis 1. Defaults are MIL's:
epsilon 1e-5 (batch/layer/instance norm) and 1e-6 (l2_norm); LRN alpha 1e-4, beta 0.75, k 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    as_float,
    kernel,
    norm_axes,
    scalar_float,
    scalar_int,
)


def _per_channel(v: NDArray[Any] | None, x: NDArray[Any], default: float) -> NDArray[Any]:
    if v is None:
        return np.asarray(default, dtype=x.dtype)
    return np.asarray(v).reshape((1, -1) + (1,) * (x.ndim - 2))


@kernel("batch_norm")
def batch_norm(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    eps = scalar_float(a.get("epsilon", 1e-5))
    mean, var = _per_channel(a["mean"], x, 0.0), _per_channel(a["variance"], x, 1.0)
    gamma, beta = _per_channel(a.get("gamma"), x, 1.0), _per_channel(a.get("beta"), x, 0.0)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@kernel("instance_norm")
def instance_norm(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    eps = scalar_float(a.get("epsilon", 1e-5))
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return y * _per_channel(a.get("gamma"), x, 1.0) + _per_channel(a.get("beta"), x, 0.0)


@kernel("layer_norm")
def layer_norm(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    eps = scalar_float(a.get("epsilon", 1e-5))
    axes = norm_axes(a["axes"], x.ndim) if a.get("axes") is not None else tuple(range(x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    # gamma/beta have shape x.shape[axes]; place them on those axes (they need not be the trailing ones).
    param_shape = tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))
    if a.get("gamma") is not None:
        y = y * np.asarray(a["gamma"]).reshape(param_shape)
    if a.get("beta") is not None:
        y = y + np.asarray(a["beta"]).reshape(param_shape)
    return y


@kernel("l2_norm")
def l2_norm(a: Args) -> NDArray[Any]:
    """Divides by the root of the sum of squares over the last three dims (all dims for a rank-3 ``x``)."""
    x = as_float(a["x"])
    eps = scalar_float(a.get("epsilon", 1e-6))
    axes = tuple(range(max(x.ndim - 3, 0), x.ndim))
    return x / np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + eps)


@kernel("local_response_norm")
def local_response_norm(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    size = scalar_int(a["size"])
    alpha, beta = scalar_float(a.get("alpha", 1e-4)), scalar_float(a.get("beta", 0.75))
    k = scalar_float(a.get("k", 1.0))
    pre = (size - 1) // 2
    post = size - 1 - pre
    sq = np.pad(x * x, [(0, 0), (pre, post)] + [(0, 0)] * (x.ndim - 2))
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    window = csum[:, size:] - csum[:, :-size]
    return x / (k + alpha / size * window) ** beta
