"""ONNX sample and test models, built in code with ``onnx.helper`` (nothing is downloaded).

Run from the repository root (after make_samples.py, whose trained Keras CNN it reuses):

    .venv/bin/python sample_models/make_onnx_samples.py

Writes:
    digits_cnn.onnx      the trained digits_cnn.keras as ONNX (opset 17): input ``image`` float32[N,1,8,8] (NCHW,
                         values in [0, 1]), output ``probs`` float32[N,10]. Same weights, transposed to NCHW.
    digits_nchw.npz      digits.npz with its images transposed to NCHW, for calibrating/verifying the ONNX model.

The ``build_*`` functions return small ``onnx.ModelProto`` graphs that the tests and benchmarks convert: a CNN with
BatchNormalization and residual adds, a Gemm MLP, a transformer encoder block, a depthwise-separable block, a
two-input/two-output model, a dynamic-batch model, and a MobileNetV2-sized network for the benchmark.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
OPSET = 17  # LayerNormalization needs 17; torch.onnx.export's default in torch 2.x is 17 as well


class Graph:
    """A tiny builder over onnx.helper: weights become initializers, every node gets a readable output name."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def weight(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def random(self, name: str, shape: tuple[int, ...], fan_in: int | None = None) -> str:
        scale = np.sqrt(2.0 / (fan_in or shape[-1]))  # He initialisation keeps activations O(1) through depth
        return self.weight(name, (self.rng.normal(size=shape) * scale).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        self.count += 1
        name = output or f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=f"{op_type}_{self.count}", **attrs))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, *, stride: int = 1, group: int = 1, bn: bool = True) -> str:
        w = self.random(f"w{self.count}", (cout, cin // group, k, k), fan_in=cin // group * k * k)
        pad = k // 2
        if not bn:
            # the bias goes into the Conv (as torch exports it): onnx2tf 2.6.9 fails on Conv + Add of a (C,1,1) constant
            b = self.weight(f"b{self.count}", (0.1 * self.rng.normal(size=cout)).astype(np.float32))
            return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)
        y = self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)
        stats = [
            (1.0 + 0.1 * self.rng.normal(size=cout)).astype(np.float32),
            (0.1 * self.rng.normal(size=cout)).astype(np.float32),
            (0.1 * self.rng.normal(size=cout)).astype(np.float32),
            (1.0 + 0.2 * self.rng.uniform(size=cout)).astype(np.float32),
        ]
        names = [self.weight(f"bn{self.count}_{i}", s) for i, s in enumerate(stats)]
        return self.op("BatchNormalization", [y, *names], epsilon=1e-5)

    def model(self, inputs: list[Any], outputs: list[Any], opset: int = OPSET) -> Any:
        from onnx import helper

        graph = helper.make_graph(self.nodes, "edgeexport_sample", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeexport")
        model.ir_version = 8  # readable by every onnxruntime since 1.10
        return model


def _value(name: str, shape: list[int | str], dtype: int | None = None) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, dtype or TensorProto.FLOAT, shape)


def _head(g: Graph, x: str, channels: int, classes: int, output: str) -> str:
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    w = g.random(f"fc{g.count}", (channels, classes))
    b = g.weight(f"fcb{g.count}", np.zeros(classes, np.float32))
    return g.op("Gemm", [pooled, w, b], output)


def build_cnn_residual(size: int = 12) -> Any:
    """Conv-BN-Relu, a residual block (two Conv-BN and an Add), MaxPool, GAP and a Gemm head. Input ``input.1``
    float32[1,3,size,size] (a name TensorFlow must rename), output ``logits`` [1,10]."""
    g = Graph(1)
    x = g.op("Relu", [g.conv("input.1", 3, 8, 3)])
    y = g.op("Relu", [g.conv(x, 8, 8, 3)])
    y = g.conv(y, 8, 8, 3)
    x = g.op("Relu", [g.op("Add", [x, y])])
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    out = _head(g, x, 8, 10, "logits")
    return g.model([_value("input.1", [1, 3, size, size])], [_value(out, [1, 10])])


def build_mlp() -> Any:
    """Two Gemm layers (transB=1, as PyTorch exports Linear) with Relu: ``features`` [1,20] -> ``scores`` [1,5]."""
    g = Graph(2)
    w1 = g.random("w1", (32, 20), fan_in=20)
    h = g.op("Relu", [g.op("Gemm", ["features", w1, g.weight("b1", np.full(32, 0.1, np.float32))], transB=1)])
    w2 = g.random("w2", (5, 32), fan_in=32)
    out = g.op("Gemm", [h, w2, g.weight("b2", np.zeros(5, np.float32))], "scores", transB=1)
    return g.model([_value("features", [1, 20])], [_value(out, [1, 5])])


def build_transformer(seq: int = 8, dim: int = 16, hidden: int = 32) -> Any:
    """A single-head pre-norm encoder block: LayerNormalization, Q/K/V MatMuls, scaled Softmax attention, a
    residual Add, and an MLP with exact GELU written with Erf (as torch exports nn.GELU()). ``tokens``
    float32[1,seq,dim] -> ``encoded`` [1,seq,dim]."""
    g = Graph(3)

    def norm(x: str) -> str:
        return g.op("LayerNormalization", [x, g.weight(f"ln{g.count}_g", np.ones(dim, np.float32)),
                                           g.weight(f"ln{g.count}_b", np.zeros(dim, np.float32))], axis=-1, epsilon=1e-5)

    x = "tokens"
    h = norm(x)
    q, k, v = (g.op("MatMul", [h, g.random(f"w{n}", (dim, dim))]) for n in "qkv")
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 2, 1])])
    scores = g.op("Mul", [scores, g.weight("scale", np.array(1.0 / np.sqrt(dim), np.float32))])
    attn = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
    x = g.op("Add", [x, g.op("MatMul", [attn, g.random("wo", (dim, dim))])])
    h = g.op("MatMul", [norm(x), g.random("w1", (dim, hidden))])
    erf = g.op("Erf", [g.op("Div", [h, g.weight("sqrt2", np.array(np.sqrt(2.0), np.float32))])])
    gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.weight("one", np.array(1.0, np.float32))])]),
                        g.weight("half", np.array(0.5, np.float32))])
    out = g.op("Add", [x, g.op("MatMul", [gelu, g.random("w2", (hidden, dim))])], "encoded")
    return g.model([_value("tokens", [1, seq, dim])], [_value(out, [1, seq, dim])])


def build_depthwise(size: int = 10) -> Any:
    """A MobileNet-style depthwise-separable block: 3x3 depthwise Conv (group = channels), BN, Clip(0, 6)
    (ReLU6), 1x1 pointwise Conv, BN, Relu. ``image`` float32[1,8,size,size] -> ``features`` [1,16,size,size]."""
    g = Graph(4)
    x = _relu6(g, g.conv("image", 8, 8, 3, group=8))
    out = g.op("Relu", [g.conv(x, 8, 16, 1)], "features")
    return g.model([_value("image", [1, 8, size, size])], [_value(out, [1, 16, size, size])])


def _relu6(g: Graph, x: str) -> str:
    return g.op("Clip", [x, g.weight(f"lo{g.count}", np.array(0.0, np.float32)),
                         g.weight(f"hi{g.count}", np.array(6.0, np.float32))])


def build_two_io(size: int = 8) -> Any:
    """Two inputs (``image`` [1,3,size,size], ``meta`` [1,4]) and two outputs (``class_logits`` [1,5] from the
    pooled image concatenated with meta, ``feature_map`` [1,6,size,size], a 4-D output onnx2tf makes NHWC)."""
    g = Graph(5)
    fmap = g.op("Relu", [g.conv("image", 3, 6, 3)], "feature_map")
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [fmap])])
    joined = g.op("Concat", [pooled, "meta"], axis=1)
    w = g.random("fc", (10, 5))
    out = g.op("Gemm", [joined, w, g.weight("fcb", np.zeros(5, np.float32))], "class_logits")
    return g.model([_value("image", [1, 3, size, size]), _value("meta", [1, 4])],
                   [_value(out, [1, 5]), _value(fmap, [1, 6, size, size])])


def build_dynamic_batch(size: int = 8) -> Any:
    """A symbolic batch ``batch``: ``x`` float32[batch,3,size,size] -> ``y`` [batch,4] (Conv, Relu, GAP, Gemm)."""
    g = Graph(6)
    x = g.op("Relu", [g.conv("x", 3, 6, 3, bn=False)])
    out = _head(g, x, 6, 4, "y")
    return g.model([_value("x", ["batch", 3, size, size])], [_value(out, ["batch", 4])])


# MobileNetV2 (Sandler et al. 2018, Table 2): expansion t, channels c, repeats n, first stride s.
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def build_mobilenet_v2(size: int = 224, classes: int = 1000) -> Any:
    """MobileNetV2 1.0 with random (He) weights and BatchNormalization kept as separate nodes: 3.5 M parameters,
    about 300 M MACs at 224x224. ``input`` float32[1,3,size,size] -> ``logits`` [1,classes]."""
    g = Graph(7)
    x = _relu6(g, g.conv("input", 3, 32, 3, stride=2))
    cin = 32
    for t, c, n, s in _MOBILENET_V2:
        for i in range(n):
            hidden = cin * t
            y = _relu6(g, g.conv(x, cin, hidden, 1)) if t != 1 else x
            y = _relu6(g, g.conv(y, hidden, hidden, 3, stride=s if i == 0 else 1, group=hidden))
            y = g.conv(y, hidden, c, 1)
            x = g.op("Add", [x, y]) if (i > 0 and cin == c) else y
            cin = c
    x = _relu6(g, g.conv(x, cin, 1280, 1))
    out = _head(g, x, 1280, classes, "logits")
    return g.model([_value("input", [1, 3, size, size])], [_value(out, [1, classes])])


def digits_cnn_from_keras(path: Path = HERE / "digits_cnn.keras") -> Any:
    """The trained Keras digits CNN rebuilt as an ONNX graph with its weights transposed to NCHW (OIHW kernels).

    Layers (see make_samples.build_cnn): conv1, conv2 (3x3 same, relu), 2x2 max pool, conv3, global average pool,
    fc1 (relu), probs (softmax). Input ``image`` float32[N,1,8,8], output ``probs`` float32[N,10]."""
    import keras

    model = keras.saving.load_model(str(path), compile=False)
    g = Graph(8)
    x = "image"
    for name in ("conv1", "conv2", "pool1", "conv3"):
        if name == "pool1":
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
            continue
        kernel, bias = model.get_layer(name).get_weights()
        w = g.weight(f"{name}.weight", kernel.transpose(3, 2, 0, 1).astype(np.float32))  # HWIO -> OIHW
        b = g.weight(f"{name}.bias", bias.astype(np.float32))
        x = g.op("Relu", [g.op("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    for name in ("fc1", "probs"):
        kernel, bias = model.get_layer(name).get_weights()
        x = g.op("Gemm", [x, g.weight(f"{name}.weight", kernel.astype(np.float32)),
                          g.weight(f"{name}.bias", bias.astype(np.float32))])
        x = g.op("Relu", [x]) if name == "fc1" else g.op("Softmax", [x], "probs", axis=-1)
    return g.model([_value("image", ["N", 1, 8, 8])], [_value("probs", ["N", 10])])


def main() -> int:
    import onnx

    started = time.perf_counter()
    model = digits_cnn_from_keras()
    onnx.checker.check_model(model)
    onnx.save(model, HERE / "digits_cnn.onnx")
    with np.load(HERE / "digits.npz") as data:
        arrays = {key: data[key] for key in data.files}
    for key in [k for k in arrays if k.endswith("__image")]:
        arrays[key] = np.ascontiguousarray(arrays[key].transpose(0, 3, 1, 2))
    np.savez_compressed(HERE / "digits_nchw.npz", **arrays)  # type: ignore[arg-type]
    print(f"digits_cnn.onnx and digits_nchw.npz written ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
