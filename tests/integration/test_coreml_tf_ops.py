"""The TF-op conversions edgeexport adds to coremltools: registered once, safely, and numerically right.

These run the conversion function through coremltools' own TF frontend objects (TranscriptionContext,
ParsedTFNode) on constant inputs, so MIL's value inference computes the result without converting a
whole TensorFlow graph; tests/integration/test_architectures.py converts real graphs that use them.
coremltools imports TensorFlow when it is installed, so this file costs a few seconds of imports.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")


def _run_conversion(op: str, values: np.ndarray) -> np.ndarray:
    """Apply the registered conversion of TF ``op`` to a constant input; return the folded MIL value."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.tensorflow.converter import (
        TranscriptionContext,
    )
    from coremltools.converters.mil.frontend.tensorflow.parsed_tf_node import (
        ParsedTFNode,
    )
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import (
        _TF_OPS_REGISTRY,
    )
    from coremltools.converters.mil.mil import Function

    context = TranscriptionContext()
    node = ParsedTFNode()
    node.name, node.op, node.inputs = "y", op, ["x"]
    with Function({}):
        context.add("x", mb.const(val=values, name="x"))
        _TF_OPS_REGISTRY[op](context, node)
        result: Any = context["y"]
        assert result.val is not None, "the conversion did not fold to a constant"
        return np.asarray(result.val)


def test_register_adds_erfc_and_is_idempotent() -> None:
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import (
        _TF_OPS_REGISTRY,
    )

    from edgeexport.targets.coreml_tf_ops import register_missing_tf_ops, registered_ops

    register_missing_tf_ops()
    first = _TF_OPS_REGISTRY["Erfc"]
    register_missing_tf_ops()  # a second call in the same process must neither raise nor re-register
    assert _TF_OPS_REGISTRY["Erfc"] is first
    assert registered_ops().get("Erfc") is first or "Erfc" not in registered_ops()


def test_native_conversions_are_not_replaced() -> None:
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import (
        _TF_OPS_REGISTRY,
    )

    from edgeexport.targets.coreml_tf_ops import register_missing_tf_ops

    native_erf = _TF_OPS_REGISTRY["Erf"]
    register_missing_tf_ops()
    assert _TF_OPS_REGISTRY["Erf"] is native_erf


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_erfc_matches_math_erfc(dtype: type) -> None:
    from edgeexport.targets.coreml_tf_ops import register_missing_tf_ops

    register_missing_tf_ops()
    x = np.array([-5.0, -2.5, -1.0, -0.3, 0.0, 0.2, 0.7, 1.5, 3.0], dtype=dtype)
    got = _run_conversion("Erfc", x)
    want = np.array([math.erfc(float(v)) for v in x])
    assert got.dtype == dtype
    # 1 - erf(x) in float32: absolute error near float32 epsilon; float16 keeps ~3 decimal digits.
    tolerance = 2e-7 if dtype == np.float32 else 2e-3
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tolerance)


def test_exact_gelu_through_erfc_matches_definition() -> None:
    """Keras 3's exact GELU is 0.5 * x * erfc(-x / sqrt(2)); check the composition against erf's definition."""
    from edgeexport.targets.coreml_tf_ops import register_missing_tf_ops

    register_missing_tf_ops()
    x = np.linspace(-6.0, 6.0, 49).astype(np.float32)
    erfc = _run_conversion("Erfc", (-x / np.sqrt(2.0)).astype(np.float32)).astype(np.float64)
    gelu = 0.5 * x * erfc
    want = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
    np.testing.assert_allclose(gelu, want, rtol=0, atol=1e-6)
