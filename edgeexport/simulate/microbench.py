"""The fixed calibration suite: single-op LiteRT models built with Keras and converted in process.

Each case is one op (conv, depthwise conv, fully connected, add, pooling, mean, padding, concat, softmax,
activation) at a shape typical of mobile CNNs, in fp32 and full-integer int8, plus the kernels of decoders
(transposed conv, UpSampling2D's TILE, bilinear resize), attention (batch matmul, softmax over sequences,
GELU, transpose) and unrolled recurrent steps (small dense, sigmoid/tanh/mul on one state vector). Two chain cases (16 tiny adds)
separate the per-op overhead from the per-invoke overhead, two chains of 1 and 16 small 1x1 convs (split by
the thread pool) give the per-op thread hand-off; the ``stream`` case (a 64 MB fp32 dense layer)
is bigger than the caches and measures DRAM bandwidth; the ``cache`` cases (4 and 6 MB dense layers) measure
the shared cache's. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.quiet import captured_output


@dataclass(frozen=True)
class Case:
    """One micro-benchmark: ``family`` it calibrates, a short ``name``, and the builder arguments."""

    family: str
    name: str
    kind: str
    args: tuple[Any, ...]


# (family, kind, args): shapes are (H, W, C) at batch 1
SUITE: tuple[Case, ...] = tuple(
    Case(family, f"{kind}-" + "x".join(str(a) for a in args), kind, args)
    for family, kind, args in (
        ("conv", "conv", (56, 16, 32, 3, 1)),
        ("conv", "conv", (28, 32, 64, 3, 1)),
        ("conv", "conv", (28, 64, 64, 1, 1)),
        ("conv", "conv", (14, 128, 128, 1, 1)),
        ("conv", "conv", (28, 64, 128, 3, 2)),
        ("conv", "conv", (7, 256, 256, 1, 1)),
        ("conv", "conv", (96, 3, 16, 3, 2)),
        ("conv", "conv", (14, 96, 24, 1, 1)),
        ("depthwise", "dwconv", (56, 32, 3, 1)),
        ("depthwise", "dwconv", (28, 96, 3, 1)),
        ("depthwise", "dwconv", (28, 144, 3, 2)),
        ("depthwise", "dwconv", (7, 512, 3, 1)),
        ("depthwise", "dwconv", (14, 240, 5, 1)),
        ("fc", "dense", (256, 256)),
        ("fc", "dense", (1024, 256)),
        ("fc", "dense", (1280, 100)),
        ("matmul", "dense_rows", (64, 64, 128)),
        ("matmul", "dense_rows", (196, 128, 128)),
        ("stream", "dense", (4096, 4096)),
        # GEMVs whose 4 and 6 MB of weights stay in the shared cache but not the core's own (hostterms)
        ("cache", "dense", (1024, 1024)),
        ("cache", "dense", (1536, 1024)),
        ("elementwise", "add", (56, 56, 32)),
        ("elementwise", "add", (28, 28, 64)),
        ("elementwise", "add", (14, 14, 96)),
        ("activation", "sigmoid", (28, 28, 64)),
        ("pool", "maxpool", (56, 56, 32, 2)),
        ("pool", "avgpool", (28, 28, 64, 3)),
        ("reduce", "mean", (7, 7, 256)),
        ("reduce", "mean", (14, 14, 128)),
        ("pad", "pad", (56, 56, 32)),
        ("concat", "concat", (28, 28, 64)),
        ("softmax", "softmax", (1000,)),
        # decoder, recurrent and attention kernels (op-type efficiencies, see calibrate.OWN_KERNELS)
        ("conv", "tconv", (14, 32, 16, 3, 2)),
        ("conv", "tconv", (28, 16, 8, 3, 2)),
        ("reshape", "upsample", (16, 16, 32, 2)),
        ("reshape", "upsample", (32, 32, 16, 2)),
        ("resize", "upsample_bilinear", (16, 16, 32, 2)),
        ("reshape", "transpose", (64, 4, 16)),
        ("matmul", "bmm", (4, 64, 16)),
        ("matmul", "bmm", (2, 16, 16)),
        ("softmax", "softmax", (4, 64, 64)),
        ("activation", "gelu", (64, 128)),
        ("activation", "tanh", (28, 28, 64)),
        ("activation", "sigmoid", (1, 64)),
        ("elementwise", "mul", (28, 28, 64)),
        ("elementwise", "mul", (1, 64)),
        ("fc", "dense", (32, 128)),
        ("chain", "chain", (1,)),
        ("chain", "chain", (16,)),
        # back-to-back ops big enough for the thread pool to split: the per-op hand-off (hostterms)
        ("handoff", "chain_conv", (1,)),
        ("handoff", "chain_conv", (16,)),
    )
)


def _layers(kind: str, args: tuple[Any, ...]) -> tuple[list[tuple[int, ...]], Callable[[list[Any]], Any]]:
    import keras

    L = keras.layers
    if kind == "conv":
        h, cin, cout, k, s = args
        return [(h, h, cin)], lambda x: L.Conv2D(cout, k, strides=s, padding="same")(x[0])
    if kind == "dwconv":
        h, c, k, s = args
        return [(h, h, c)], lambda x: L.DepthwiseConv2D(k, strides=s, padding="same")(x[0])
    if kind == "dense":
        cin, cout = args
        return [(cin,)], lambda x: L.Dense(cout)(x[0])
    if kind == "dense_rows":
        rows, cin, cout = args
        return [(rows, cin)], lambda x: L.Dense(cout)(x[0])
    if kind == "add":
        return [tuple(args), tuple(args)], lambda x: L.Add()([x[0], x[1]])
    if kind in ("sigmoid", "tanh", "gelu"):
        return [tuple(args)], lambda x: L.Activation(kind)(x[0])
    if kind == "mul":
        return [tuple(args), tuple(args)], lambda x: L.Multiply()([x[0], x[1]])
    if kind == "tconv":
        h, cin, cout, k, s = args
        return [(h, h, cin)], lambda x: L.Conv2DTranspose(cout, k, strides=s, padding="same")(x[0])
    if kind in ("upsample", "upsample_bilinear"):
        h, w, c, f = args
        mode = "bilinear" if kind == "upsample_bilinear" else "nearest"
        return [(h, w, c)], lambda x: L.UpSampling2D(f, interpolation=mode)(x[0])
    if kind == "transpose":
        return [tuple(args)], lambda x: L.Permute((2, 1, 3))(x[0])
    if kind == "bmm":
        heads, seq, dim = args
        import keras.ops as K

        return [(heads, seq, dim), (heads, dim, seq)], lambda x: K.matmul(x[0], x[1])
    if kind == "maxpool":
        h, w, c, k = args
        return [(h, w, c)], lambda x: L.MaxPooling2D(k)(x[0])
    if kind == "avgpool":
        h, w, c, k = args
        return [(h, w, c)], lambda x: L.AveragePooling2D(k, strides=1, padding="same")(x[0])
    if kind == "mean":
        return [tuple(args)], lambda x: L.GlobalAveragePooling2D()(x[0])
    if kind == "pad":
        return [tuple(args)], lambda x: L.ZeroPadding2D(1)(x[0])
    if kind == "concat":
        return [tuple(args), tuple(args)], lambda x: L.Concatenate()([x[0], x[1]])
    if kind == "softmax":
        return [tuple(args)], lambda x: L.Softmax()(x[0])
    if kind == "chain":
        (n,) = args

        def chain(x: list[Any]) -> Any:
            y = x[0]
            for _ in range(n):
                y = L.Add()([y, x[1]])
            return y

        return [(4, 4, 8), (4, 4, 8)], chain
    if kind == "chain_conv":
        (n,) = args

        def convs(x: list[Any]) -> Any:
            y = x[0]
            for _ in range(n):
                y = L.Conv2D(32, 1)(y)
            return y

        return [(14, 14, 32)], convs
    raise ValueError(f"unknown micro-benchmark kind {kind!r}")


def build(case: Case, dtype: str, seed: int = 0) -> bytes:
    """Convert ``case`` to a ``.tflite`` (``dtype`` ``fp32`` or ``int8`` with int8 I/O); returns its bytes."""
    import keras

    keras.utils.set_random_seed(seed)
    shapes, body = _layers(case.kind, case.args)
    inputs = [keras.Input(shape, batch_size=1) for shape in shapes]
    model = keras.Model(inputs, body(inputs))
    return keras_to_tflite(model, dtype, seed=seed)


def keras_to_tflite(model: Any, dtype: str, *, seed: int = 0, samples: int = 4) -> bytes:
    """A batch-1 Keras model as ``.tflite`` bytes: ``fp32``, or ``int8`` with int8 I/O calibrated on ``samples``
    standard-normal inputs (timing models only: random calibration is fine when the weights are random too)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if dtype == "int8":
        rng = np.random.default_rng(seed)
        shapes = [tuple(1 if d is None else int(d) for d in tensor.shape) for tensor in model.inputs]

        def representative() -> Iterator[list[NDArray[Any]]]:
            for _ in range(samples):
                yield [rng.standard_normal(shape).astype(np.float32) for shape in shapes]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with captured_output():
        data: bytes = converter.convert()
    return data
