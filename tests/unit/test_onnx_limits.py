"""The plan-time table of what our ONNX routes cannot convert (``targets/onnx_limits.py``), on the onnx wheel's own
node tests that reproduced each failure, and a valid neighbour of each that must not be refused."""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")

from edgeexport.targets.onnx_limits import LIMITS, limits_hit  # noqa: E402

NODE = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def _hits(test: str, target: str) -> dict[str, tuple[int, str]]:
    return limits_hit(onnx.load(str(NODE / test / "model.onnx")), target)


@pytest.mark.parametrize(("test", "target", "key"), [
    ("test_add_uint8", "tflite", "Add (uint8)"),
    ("test_mul_int16", "tflite", "Mul (int16)"),
    ("test_max_uint64", "tflite", "Max (uint64)"),
    ("test_cumsum_1d", "tflite", "CumSum (float64)"),
    ("test_einsum_batch_matmul", "tflite", "Einsum (float64)"),
    ("test_maxpool_3d_default", "tflite", "MaxPool"),
    ("test_add_uint8", "coreml", "input x (uint8)"),
    ("test_sub_int16", "coreml", "input x (int16)"),
    ("test_maxpool_2d_dilations", "coreml", "MaxPool"),
    ("test_maxpool_with_argmax_2d_precomputed_pads", "coreml", "MaxPool"),
])
def test_reproduced_failures_are_in_the_table(test: str, target: str, key: str) -> None:
    hits = _hits(test, target)
    assert key in hits, hits
    assert hits[key][1]  # a reason


@pytest.mark.parametrize(("test", "target"), [
    ("test_add", "tflite"), ("test_add", "coreml"), ("test_mul_example", "tflite"), ("test_max_int32", "tflite"),
    ("test_maxpool_2d_default", "tflite"), ("test_maxpool_2d_default", "coreml"), ("test_cumsum_1d", "coreml"),
    ("test_einsum_batch_matmul", "coreml"), ("test_cumsum_2d_int32", "tflite"), ("test_add_int8", "coreml"), ("test_averagepool_2d_default", "tflite"),
])
def test_valid_neighbours_are_not_refused(test: str, target: str) -> None:
    assert _hits(test, target) == {}


def test_every_entry_has_a_reason() -> None:
    assert all(limit.reason for limits in LIMITS.values() for limit in limits)
