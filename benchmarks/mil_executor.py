"""Time the numpy MIL executor against the Keras reference on MobileNetV2 (alpha 1.0, 224x224, weights=None).

Prints, for an fp32 and an fp16 ML Program converted by coremltools: executor milliseconds per inference next
to Keras' (median of ``--runs`` after one warm-up, both measured in this one process, so compare the ratio,
not absolute times across runs), the output cosine vs Keras, the program's op histogram, and the list of
MIL ops the executor supports. Nothing is downloaded (weights=None).

    TF_CPP_MIN_LOG_LEVEL=3 /tmp/venv-probe/bin/python benchmarks/mil_executor.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: first-call allocation and graph tracing do not count
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--size", type=int, default=224, help="input height and width in pixels (default 224)")
    args = parser.parse_args(argv)

    import coremltools as ct
    import keras
    import numpy as np
    import tensorflow as tf

    from edgeexport.runtimes.mil import load_program, supported_ops

    keras.utils.set_random_seed(0)
    size = args.size
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=1.0, weights=None,
                                            classifier_activation=None)  # logits: a softmax over 1000
    # classes of an untrained model is nearly uniform and would make any executor look right
    rng = np.random.default_rng(0)
    # An untrained MobileNetV2 halves its activations' scale at every block (its logits come out near 1e-17,
    # below fp16's range). Set each BatchNorm's statistics from one random batch (momentum 0, one training
    # pass) so activations keep a normal scale, as in a trained model, and fp16 is measured on real values.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(rng.uniform(-1, 1, (4, size, size, 3)).astype(np.float32), training=True)
    x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    fn = tf.function(lambda t: model(t, training=False),
                     input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32)])
    reference = np.asarray(model(x, training=False))
    keras_ms = _median_ms(lambda: model(x, training=False), args.runs)

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"model: keras.applications.MobileNetV2(alpha=1.0, input {size}x{size}x3, weights=None, logits), batch 1")
    print(f"keras reference: {keras_ms:.1f} ms/inference (median of {args.runs})")
    with tempfile.TemporaryDirectory() as tmp:
        for label, precision in (("fp32", ct.precision.FLOAT32), ("fp16", ct.precision.FLOAT16)):
            path = Path(tmp) / f"mobilenet_v2_{label}.mlpackage"
            start = time.perf_counter()
            ct.convert([fn.get_concrete_function()], source="tensorflow", convert_to="mlprogram",
                       compute_precision=precision).save(str(path))
            convert_s = time.perf_counter() - start
            start = time.perf_counter()
            program = load_program(path)
            load_s = time.perf_counter() - start
            feeds = {program.inputs[0].name: x}
            (out,) = program.run(feeds).values()
            a, b = out.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
            cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            mil_ms = _median_ms(lambda: program.run(feeds), args.runs)
            print(f"{label} program: executor {mil_ms:.1f} ms/inference, ratio to keras {mil_ms / keras_ms:.1f}x, "
                  f"cosine vs keras {cos:.7f}, max |diff| {np.abs(a - b).max():.2e} "
                  f"(convert {convert_s:.1f} s, load {load_s:.1f} s)")
            print(f"  ops: {program.op_histogram()}")
    print(f"supported MIL ops ({len(supported_ops())}): {', '.join(supported_ops())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
