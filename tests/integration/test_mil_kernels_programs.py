"""MIL programs built with coremltools' Builder, run by the executor, against TensorFlow's own ops.

These exercise the whole path (real MIL op instances, const inputs, declared dtypes, fp16 rounding, error
handling) rather than calling kernels directly. coremltools imports TensorFlow, so this file costs a few
seconds of imports; the formulas-only kernel tests live in test_mil_kernels.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ct = pytest.importorskip("coremltools")
tf = pytest.importorskip("tensorflow")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402

from edgeexport.errors import (  # noqa: E402
    EXIT_BAD_INPUT,
    EXIT_UNSUPPORTED,
    DataError,
    ModelFormatError,
    UnsupportedOpError,
)
from edgeexport.runtimes.mil import MilProgram, load_program  # noqa: E402

RNG = np.random.default_rng(7)


def nchw(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 3, 1, 2))


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 2, 3, 1))


@pytest.mark.parametrize("padding, strides, dilations", [("SAME", 2, 1), ("VALID", 1, 2), ("SAME", 1, 2)])
def test_conv_program_matches_tf_conv2d(padding: str, strides: int, dilations: int) -> None:
    x = RNG.normal(size=(1, 9, 10, 3)).astype(np.float32)
    w_hwio = RNG.normal(size=(3, 3, 3, 5)).astype(np.float32)
    want = tf.nn.conv2d(x, w_hwio, strides=strides, padding=padding, dilations=dilations).numpy()
    w_oihw = np.transpose(w_hwio, (3, 2, 0, 1))

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 9, 10))])
    def prog(t):
        return mb.conv(x=t, weight=w_oihw, strides=[strides] * 2, dilations=[dilations] * 2,
                       pad_type=padding.lower())

    program = MilProgram(prog)
    (got,) = program.run({program.inputs[0].name: nchw(x)}).values()
    np.testing.assert_allclose(nhwc(got), want, rtol=1e-4, atol=1e-4)


def test_depthwise_program_matches_tf() -> None:
    x = RNG.normal(size=(1, 8, 8, 4)).astype(np.float32)
    w = RNG.normal(size=(3, 3, 4, 2)).astype(np.float32)  # channel multiplier 2
    want = tf.nn.depthwise_conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME").numpy()
    w_mil = np.transpose(w.reshape(3, 3, 8), (2, 0, 1))[:, None]  # (C*M, 1, kh, kw)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 8, 8))])
    def prog(t):
        return mb.conv(x=t, weight=w_mil, strides=[2, 2], pad_type="same", groups=4)

    program = MilProgram(prog)
    (got,) = program.run({program.inputs[0].name: nchw(x)}).values()
    np.testing.assert_allclose(nhwc(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_pool_program_matches_tf_same_padding(kind: str) -> None:
    x = RNG.normal(size=(1, 7, 9, 3)).astype(np.float32)
    tf_pool = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d
    want = tf_pool(x, ksize=3, strides=2, padding="SAME").numpy()

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 7, 9))])
    def prog(t):
        if kind == "avg":  # TF's SAME average excludes the padding from the divisor
            return mb.avg_pool(x=t, kernel_sizes=[3, 3], strides=[2, 2], pad_type="same",
                               exclude_padding_from_average=True)
        return mb.max_pool(x=t, kernel_sizes=[3, 3], strides=[2, 2], pad_type="same")

    program = MilProgram(prog)
    (got,) = program.run({program.inputs[0].name: nchw(x)}).values()
    np.testing.assert_allclose(nhwc(got), want, rtol=1e-5, atol=1e-5)


def test_activation_programs_match_tf() -> None:
    x = np.linspace(-6, 6, 49, dtype=np.float32).reshape(7, 7)

    @mb.program(input_specs=[mb.TensorSpec(shape=(7, 7))])
    def prog(t):
        return (mb.gelu(x=t, mode="EXACT"), mb.gelu(x=t, mode="TANH_APPROXIMATION"), mb.erf(x=t),
                mb.softplus(x=t), mb.silu(x=t), mb.sigmoid_hard(x=t, alpha=1 / 6, beta=0.5),
                mb.clip(x=t, alpha=-1.0, beta=2.0), mb.elu(x=t, alpha=1.0))

    program = MilProgram(prog)
    got = list(program.run({program.inputs[0].name: x}).values())
    want = [tf.nn.gelu(x, approximate=False), tf.nn.gelu(x, approximate=True), tf.math.erf(x), tf.nn.softplus(x),
            tf.nn.silu(x), tf.nn.relu6(x + 3) / 6, tf.clip_by_value(x, -1.0, 2.0), tf.nn.elu(x)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, np.asarray(w), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align_corners", [True, False])
def test_upsample_bilinear_matches_tf_resize(align_corners: bool) -> None:
    x = RNG.normal(size=(1, 5, 4, 2)).astype(np.float32)
    want = tf.compat.v1.image.resize_bilinear(x, (10, 12), align_corners=align_corners,
                                              half_pixel_centers=not align_corners).numpy()

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 5, 4))])
    def prog(t):
        return mb.upsample_bilinear(x=t, scale_factor_height=2.0, scale_factor_width=3.0, align_corners=align_corners)

    program = MilProgram(prog)
    (got,) = program.run({program.inputs[0].name: nchw(x)}).values()
    np.testing.assert_allclose(nhwc(got), want, rtol=1e-5, atol=1e-5)


def test_layer_norm_and_matmul_programs_match_tf() -> None:
    x = RNG.normal(size=(2, 5, 8)).astype(np.float32)
    gamma, beta = RNG.normal(size=8).astype(np.float32), RNG.normal(size=8).astype(np.float32)
    w = RNG.normal(size=(8, 3)).astype(np.float32)
    mean, var = tf.nn.moments(tf.constant(x), axes=[-1], keepdims=True)
    want_ln = ((x - mean) / tf.sqrt(var + 1e-3) * gamma + beta).numpy()

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 5, 8))])
    def prog(t):
        ln = mb.layer_norm(x=t, axes=[-1], gamma=gamma, beta=beta, epsilon=1e-3)
        return ln, mb.matmul(x=ln, y=w)

    program = MilProgram(prog)
    ln, mm = program.run({program.inputs[0].name: x}).values()
    np.testing.assert_allclose(ln, want_ln, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mm, tf.linalg.matmul(want_ln, w).numpy(), rtol=1e-4, atol=1e-4)


def test_fp16_program_rounds_every_op_output_and_fp32_mode_does_not() -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(3,), dtype=types.fp16)], opset_version=ct.target.iOS16)
    def prog(t):
        # 1 + 2**-12 is not representable in fp16: rounding after the add loses it, the subtract exposes it.
        return mb.sub(x=mb.add(x=t, y=np.float16(2**-12)), y=t)

    program = MilProgram(prog)
    name = program.inputs[0].name
    assert program.inputs[0].dtype == "float16"
    x = np.ones(3, dtype=np.float16)
    (auto,) = program.run({name: x}).values()
    (exact,) = program.run({name: x}, precision="fp32").values()
    assert auto.dtype == np.float16 and exact.dtype == np.float32
    np.testing.assert_array_equal(auto, [0, 0, 0])
    np.testing.assert_allclose(exact, [2**-12] * 3)


def test_multi_output_ops_and_intermediates() -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 6))])
    def prog(t):
        a, b = mb.split(x=t, num_splits=2, axis=-1)
        return mb.concat(values=[mb.relu(x=b, name="r"), a], axis=0)

    program = MilProgram(prog)
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    (got,) = program.run({program.inputs[0].name: x}, keep_intermediates=True).values()
    np.testing.assert_array_equal(got, np.concatenate([np.maximum(x[:, 3:], 0), x[:, :3]]))
    np.testing.assert_array_equal(program.intermediates["r"], np.maximum(x[:, 3:], 0))


def test_op_without_kernel_raises_before_running() -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 2, 2))])
    def prog(t):
        y = mb.relu(x=t)
        return mb.resize_bilinear(x=y, target_size_height=3, target_size_width=5)

    program = MilProgram(prog, source="toy.mlpackage")
    assert program.unsupported_ops() == {"resize_bilinear": 1}
    assert program.op_histogram()["relu"] == 1
    with pytest.raises(UnsupportedOpError) as info:
        program.run({program.inputs[0].name: np.ones((1, 1, 2, 2), np.float32)}, keep_intermediates=True)
    assert info.value.exit_code == EXIT_UNSUPPORTED
    assert "resize_bilinear" in info.value.one_line() and "toy.mlpackage" in info.value.one_line()
    assert program.intermediates == {}


def test_bad_feeds_are_data_errors() -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))])
    def prog(t):
        return mb.relu(x=t)

    program = MilProgram(prog)
    name = program.inputs[0].name
    with pytest.raises(DataError, match="missing input"):
        program.run({})
    with pytest.raises(DataError, match="shape"):
        program.run({name: np.zeros((3, 2), np.float32)})
    with pytest.raises(DataError, match="unknown input"):
        program.run({name: np.zeros((2, 3), np.float32), "other": np.zeros(1)})
    with pytest.raises(DataError, match="precision"):
        program.run({name: np.zeros((2, 3), np.float32)}, precision="int8")


def test_unreadable_packages_are_model_format_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="not found"):
        load_program(tmp_path / "missing.mlpackage")
    broken = tmp_path / "broken.mlpackage"
    broken.mkdir()
    (broken / "Manifest.json").write_text("{not json")
    with pytest.raises(ModelFormatError) as info:
        load_program(broken)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "\n" not in info.value.one_line()


def test_unsupported_parameter_variant_is_exit_4_not_a_crash() -> None:
    from edgeexport.errors import UnsupportedError

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 2, 2))])
    def prog(t):
        return mb.upsample_nearest_neighbor(x=t, scale_factor_height=1.5, scale_factor_width=2.0)

    program = MilProgram(prog)
    assert program.unsupported_ops() == {}
    with pytest.raises(UnsupportedError, match="integer scale") as info:
        program.run({program.inputs[0].name: np.ones((1, 1, 2, 2), np.float32)})
    assert info.value.exit_code == EXIT_UNSUPPORTED


def test_control_flow_is_reported_unsupported() -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2,))])
    def prog(t):
        pred = mb.greater(x=mb.reduce_sum(x=t), y=0.0)
        return mb.cond(pred=pred, _true_fn=lambda: mb.relu(x=t), _false_fn=lambda: mb.sigmoid(x=t))

    program = MilProgram(prog)
    assert program.unsupported_ops() == {"cond": 1}
    assert program.op_histogram()["sigmoid"] == 1
    with pytest.raises(UnsupportedOpError, match="cond"):
        program.run({program.inputs[0].name: np.ones(2, np.float32)})
