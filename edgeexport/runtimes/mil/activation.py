"""Activation MIL kernels (relu family, sigmoid family, gelu in its three modes, softmax, prelu, ...).

Parameter defaults are MIL's: ``leaky_relu`` alpha 0.01, ``elu`` alpha 1.0, ``sigmoid_hard`` alpha 0.2 and
beta 0.5, ``thresholded_relu`` alpha 1.0, ``gelu`` mode ``"EXACT"``, ``softmax`` axis -1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.elementwise import erf_array
from edgeexport.runtimes.mil.registry import (
    Args,
    as_float,
    kernel,
    scalar_float,
    scalar_int,
    scalar_str,
)


def _sigmoid(x: NDArray[Any]) -> NDArray[Any]:
    # exp of -|x| never overflows; the two branches give the same value.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _channel_param(alpha: NDArray[Any], x: NDArray[Any]) -> NDArray[Any]:
    """A per-channel (axis 1) parameter vector shaped to broadcast against ``x`` of rank >= 2."""
    alpha = np.asarray(alpha)
    if alpha.ndim == 0 or x.ndim < 2:
        return alpha
    return alpha.reshape((1, -1) + (1,) * (x.ndim - 2))


@kernel("relu")
def relu(a: Args) -> NDArray[Any]:
    return np.maximum(as_float(a["x"]), 0)


@kernel("relu6")
def relu6(a: Args) -> NDArray[Any]:
    return np.clip(as_float(a["x"]), 0, 6)


@kernel("leaky_relu")
def leaky_relu(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return np.where(x >= 0, x, x * scalar_float(a.get("alpha", 0.01)))


@kernel("elu")
def elu(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return np.where(x > 0, x, scalar_float(a.get("alpha", 1.0)) * np.expm1(np.minimum(x, 0)))


@kernel("thresholded_relu")
def thresholded_relu(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return np.where(x >= scalar_float(a.get("alpha", 1.0)), x, 0).astype(x.dtype)


@kernel("clamped_relu")
def clamped_relu(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    y = np.where(x >= 0, x, x * scalar_float(a["alpha"]))
    return np.minimum(y, scalar_float(a["beta"]))


@kernel("prelu")
def prelu(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    alpha = _channel_param(a["alpha"], x)
    return np.where(x >= 0, x, x * alpha)


@kernel("sigmoid")
def sigmoid(a: Args) -> NDArray[Any]:
    return _sigmoid(as_float(a["x"]))


@kernel("sigmoid_hard")
def sigmoid_hard(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    alpha, beta = scalar_float(a.get("alpha", 0.2)), scalar_float(a.get("beta", 0.5))
    return np.clip(alpha * x + beta, 0, 1).astype(x.dtype)


@kernel("silu")
def silu(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return x * _sigmoid(x)


@kernel("softplus")
def softplus(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return np.logaddexp(x, 0).astype(x.dtype)


@kernel("softplus_parametric")
def softplus_parametric(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    alpha, beta = _channel_param(a["alpha"], x), _channel_param(a["beta"], x)
    return (alpha * np.logaddexp(beta * x, 0)).astype(x.dtype)


@kernel("softsign")
def softsign(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return x / (1 + np.abs(x))


@kernel("scaled_tanh")
def scaled_tanh(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return scalar_float(a.get("alpha", 1.0)) * np.tanh(scalar_float(a.get("beta", 1.0)) * x)


@kernel("linear_activation")
def linear_activation(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    return scalar_float(a["alpha"]) * x + scalar_float(a.get("beta", 0.0))


@kernel("gelu")
def gelu(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    mode = scalar_str(a.get("mode", "EXACT")).upper()
    if mode == "EXACT":
        return (0.5 * x * (1.0 + erf_array(x / math.sqrt(2.0)))).astype(x.dtype)
    if mode == "TANH_APPROXIMATION":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype)
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    raise NotImplementedError(f"gelu mode {mode!r} is not one of EXACT, TANH_APPROXIMATION, SIGMOID_APPROXIMATION")


@kernel("softmax")
def softmax(a: Args) -> NDArray[Any]:
    x = as_float(a["x"])
    axis = scalar_int(a.get("axis", -1))
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
