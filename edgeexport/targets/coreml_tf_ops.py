"""TensorFlow ops that coremltools 9.0 cannot convert, registered as compositions of MIL ops it has.

Each conversion here was found missing while converting a real Keras 3 model on this machine:

* ``Erfc``: Keras 3's exact GELU (``activation="gelu"``, ``approximate=False``) on the TensorFlow
  backend computes ``0.5 * x * erfc(-x / sqrt(2))``; coremltools stops with
  ``Conversion for TF op 'Erfc' not implemented``. MIL has ``erf`` (iOS15+), and erfc(x) = 1 - erf(x).
  In float32 the subtraction loses relative precision only where erfc(x) is tiny (x > ~3); GELU multiplies
  that tail by 0.5 * x with x < 0 there, so its absolute error stays below 1e-7 * |x|.

Call ``register_missing_tf_ops()`` before ``coremltools.convert``; calling it again is a no-op, and a
conversion that coremltools itself provides (in a later release) is never replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# TF op name -> our conversion; filled lazily so importing this module stays cheap.
_REGISTERED: dict[str, Callable[[Any, Any], None]] = {}


def _convert_erfc(context: Any, node: Any) -> None:
    """TF ``Erfc(x)`` as MIL ``1 - erf(x)``, keeping x's float dtype (fp32 or fp16)."""
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    x = context[node.inputs[0]]
    # MIL's sub wants both operands of one dtype; a bare Python float would be fp32.
    one = np.array(1.0, dtype=types.nptype_from_builtin(x.dtype))
    erf = mb.erf(x=x, name=f"{node.name}_erf")
    context.add(node.name, mb.sub(x=one, y=erf, name=node.name))


_CONVERSIONS: dict[str, Callable[[Any, Any], None]] = {"Erfc": _convert_erfc}


def registered_ops() -> dict[str, Callable[[Any, Any], None]]:
    """The TF op names this module registered in this process, mapped to their conversion functions."""
    return dict(_REGISTERED)


def register_missing_tf_ops() -> None:
    """Register with coremltools' TF frontend every conversion in this module it does not already have.

    Idempotent: safe to call many times in one process. Imports coremltools (and, through it, TensorFlow).
    """
    # Importing the frontends fills coremltools' registry with its own conversions first, so we only add
    # the ones it lacks and never shadow a native conversion.
    import coremltools.converters.mil.frontend.tensorflow.ops
    import coremltools.converters.mil.frontend.tensorflow2.ops  # noqa: F401
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import (
        _TF_OPS_REGISTRY,
        register_tf_op,
    )

    for tf_name, func in _CONVERSIONS.items():
        if tf_name in _TF_OPS_REGISTRY:
            continue
        # The registry keys on the function's __name__, so register a function named after the TF op.
        def conversion(context: Any, node: Any, _impl: Callable[[Any, Any], None] = func) -> None:
            _impl(context, node)

        conversion.__name__ = tf_name
        register_tf_op(conversion)
        _REGISTERED[tf_name] = conversion
