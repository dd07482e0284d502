"""Elementwise MIL kernels: binary arithmetic/comparison/logic with numpy broadcasting, and unary math.

MIL's binary ops broadcast like numpy. Unary ops with an ``epsilon`` (``inverse``, ``log``, ``rsqrt``) add it
before the function, with the MIL defaults (1e-4, 1e-45, 1e-12) when the program leaves it out.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runtimes.mil.registry import (
    Args,
    Kernel,
    as_float,
    kernel,
    scalar_float,
)


def _binary(fn: np.ufunc) -> Kernel:
    def run(a: Args) -> NDArray[Any]:
        return np.asarray(fn(a["x"], a["y"]))

    return run


for _name, _fn in {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}.items():
    kernel(_name)(_binary(_fn))


@kernel("real_div")
def real_div(a: Args) -> NDArray[Any]:
    # True division; where the program declares an int output the executor's cast truncates toward zero.
    return np.asarray(np.true_divide(a["x"], a["y"]))


@kernel("floor_div")
def floor_div(a: Args) -> NDArray[Any]:
    return np.asarray(np.floor_divide(a["x"], a["y"]))


@kernel("mod")
def mod(a: Args) -> NDArray[Any]:
    # MIL mod follows the sign of the divisor (floor mod), as numpy's mod does.
    return np.asarray(np.mod(a["x"], a["y"]))


@kernel("pow")
def pow_(a: Args) -> NDArray[Any]:
    return np.asarray(np.power(as_float(a["x"]), a["y"]))


def _unary(fn: np.ufunc, floats: bool = True) -> Kernel:
    def run(a: Args) -> NDArray[Any]:
        x = as_float(a["x"]) if floats else np.asarray(a["x"])
        return np.asarray(fn(x))

    return run


_UNARY: tuple[tuple[str, Any, bool], ...] = (
    ("abs", np.abs, False),
    ("acos", np.arccos, True),
    ("asin", np.arcsin, True),
    ("atan", np.arctan, True),
    ("atanh", np.arctanh, True),
    ("acosh", np.arccosh, True),
    ("asinh", np.arcsinh, True),
    ("ceil", np.ceil, True),
    ("cos", np.cos, True),
    ("cosh", np.cosh, True),
    ("exp", np.exp, True),
    ("exp2", np.exp2, True),
    ("floor", np.floor, True),
    ("logical_not", np.logical_not, False),
    ("round", np.round, True),
    ("sign", np.sign, False),
    ("sin", np.sin, True),
    ("sinh", np.sinh, True),
    ("sqrt", np.sqrt, True),
    ("square", np.square, False),
    ("tan", np.tan, True),
    ("tanh", np.tanh, True),
)
for _name, _fn, _floats in _UNARY:
    kernel(_name)(_unary(_fn, _floats))


@kernel("identity")
def identity(a: Args) -> NDArray[Any]:
    return np.asarray(a["x"])


@kernel("inverse")
def inverse(a: Args) -> NDArray[Any]:
    eps = scalar_float(a.get("epsilon", 1e-4))
    return 1.0 / (as_float(a["x"]) + eps)


@kernel("log")
def log(a: Args) -> NDArray[Any]:
    eps = scalar_float(a.get("epsilon", 1e-45))
    x = as_float(a["x"])
    # 1e-45 underflows to 0 in fp32 arithmetic; adding it in float64 keeps log(0) finite as Core ML does.
    return np.log(x.astype(np.float64) + eps).astype(x.dtype)


@kernel("rsqrt")
def rsqrt(a: Args) -> NDArray[Any]:
    eps = scalar_float(a.get("epsilon", 1e-12))
    return 1.0 / np.sqrt(as_float(a["x"]) + eps)


@kernel("clip")
def clip(a: Args) -> NDArray[Any]:
    return np.clip(as_float(a["x"]), a["alpha"], a["beta"])


@kernel("threshold")
def threshold(a: Args) -> NDArray[Any]:
    return np.maximum(as_float(a["x"]), scalar_float(a["alpha"]))


def erf_array(x: NDArray[Any]) -> NDArray[Any]:
    """The error function, elementwise, in the dtype of ``x`` (float64 inside).

    Uses scipy when present; otherwise a vectorized ``math.erf`` (exact to double precision, slower).
    """
    x = as_float(x)
    try:
        from scipy.special import (
            erf as _erf,  # scipy comes with scikit-learn, which the project pins
        )

        return np.asarray(_erf(x.astype(np.float64))).astype(x.dtype)
    except ImportError:  # pragma: no cover - scipy is a dependency of scikit-learn
        return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


@kernel("erf")
def erf(a: Args) -> NDArray[Any]:
    return erf_array(a["x"])
