"""The iOS17 activation quantize/dequantize kernels against a direct formula (numpy only)."""

from __future__ import annotations

import numpy as np

from edgeexport.runtimes.mil.registry import kernels


def test_quantize_per_tensor_rounds_half_to_even_and_clips() -> None:
    x = np.array([-300.0, -1.5, -0.5, 0.5, 1.5, 2.5, 300.0], np.float32)
    got = kernels()["quantize"]({"input": x, "scale": np.float32(1.0), "zero_point": np.int8(0), "output_dtype": "int8"})
    assert got.dtype == np.int8
    assert got.tolist() == [-128, -2, 0, 0, 2, 2, 127]


def test_quantize_per_channel_with_zero_point_uint8() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    scale = np.array([0.01, 0.02, 0.05], np.float32)
    zero = np.array([128, 100, 90], np.uint8)
    got = kernels()["quantize"]({"input": x, "scale": scale, "zero_point": zero, "axis": 1, "output_dtype": "uint8"})
    expected = np.empty_like(got)
    for c in range(3):
        expected[:, c] = np.clip(np.round(x[:, c] / scale[c]) + int(zero[c]), 0, 255)
    assert np.array_equal(got, expected)


def test_dequantize_inverts_quantize_within_half_a_step() -> None:
    x = np.linspace(-1, 1, 101, dtype=np.float32).reshape(1, 101)
    args = {"scale": np.float32(1 / 127), "zero_point": np.int8(0)}
    q = kernels()["quantize"]({"input": x, "output_dtype": "int8", **args})
    back = kernels()["dequantize"]({"input": q, **args})
    assert back.dtype == np.float32
    assert np.max(np.abs(back - x)) <= 0.5 / 127 + 1e-7
