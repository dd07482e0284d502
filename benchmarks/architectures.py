"""Convert common Keras 3 architectures to TFLite and Core ML and print times, sizes and errors.

Usage (from the repo root; keep it to a few models at a time on a shared machine):

    TF_CPP_MIN_LOG_LEVEL=3 /tmp/venv-probe/bin/python benchmarks/architectures.py            # all
    TF_CPP_MIN_LOG_LEVEL=3 /tmp/venv-probe/bin/python benchmarks/architectures.py --fast     # unmarked test subset
    TF_CPP_MIN_LOG_LEVEL=3 /tmp/venv-probe/bin/python benchmarks/architectures.py small_cnn lstm_text
    TF_CPP_MIN_LOG_LEVEL=3 /tmp/venv-probe/bin/python benchmarks/architectures.py --rnn-loop-vs-unroll

Every model is built with random weights (weights=None; nothing is downloaded) and a fixed seed. The
pipeline is the one edgeexport uses: ``prepare_for_export`` -> ``export_saved_model`` (one fixed-shape
``serve`` endpoint, batch 1) -> ``TFLiteConverter.from_saved_model`` and ``coremltools.convert`` of the
endpoint's concrete function (mlprogram, after ``register_missing_tf_ops``).

The builders (ARCHITECTURES) are also what tests/integration/test_architectures.py converts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEED = 7


@dataclass(frozen=True)
class Architecture:
    """A model builder plus how to feed it: ``inputs(model, rng, batch)`` gives one array per model input."""

    name: str
    build: Callable[[], Any]
    inputs: Callable[[Any, Any, int], list[Any]]
    slow: bool
    # Max error relative to the output scale: float32 TFLite vs Keras, and the fp16 Core ML program.
    tflite_tol: float = 1e-4
    fp16_tol: float = 5e-2

    def model(self, seed: int = SEED) -> Any:
        """The model with seeded random weights and BatchNorm statistics settled on random inputs."""
        import keras
        import numpy as np

        keras.utils.set_random_seed(seed)
        model = self.build()
        settle_batchnorm(model, self.inputs(model, np.random.default_rng(seed + 1), 8))
        return model


def settle_batchnorm(model: Any, feeds: list[Any]) -> None:
    """Set every BatchNormalization's moving mean/variance to the statistics of ``feeds`` (one batch).

    With random weights and the default moving statistics (0 and 1), deep CNNs shrink their activations
    layer after layer (MobileNet V1 at 32x32 gave logits near 1e-16), which would make an error relative
    to the output scale meaningless. One training-mode pass with momentum 0 makes each BatchNorm see
    unit-scale activations, as in a trained network. Dropout in that pass only perturbs the statistics.
    """
    import keras

    layers = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model(feeds if len(feeds) > 1 else feeds[0], training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum


def _all_layers(layer: Any) -> list[Any]:
    found = []
    for child in getattr(layer, "layers", []) or []:
        found.append(child)
        found.extend(_all_layers(child))
    return found


def _images(model: Any, rng: Any, batch: int = 1) -> list[Any]:
    import numpy as np

    # keras.applications expect 0..255 pixels (those with preprocessing layers rescale them inside).
    return [rng.uniform(0.0, 255.0, size=(batch, *t.shape[1:])).astype(np.float32) for t in model.inputs]


def _floats(model: Any, rng: Any, batch: int = 1) -> list[Any]:
    import numpy as np

    return [rng.standard_normal(size=(batch, *t.shape[1:])).astype(np.float32) for t in model.inputs]


def _tokens(vocab: int, pad_tail: int = 0) -> Callable[[Any, Any, int], list[Any]]:
    def make(model: Any, rng: Any, batch: int = 1) -> list[Any]:
        import numpy as np

        (tensor,) = model.inputs
        tokens = rng.integers(1, vocab, size=(batch, *tensor.shape[1:])).astype(np.int32)
        if pad_tail:
            tokens[:, -pad_tail:] = 0  # padding id 0, masked by Embedding(mask_zero=True)
        return [tokens]

    return make


def small_cnn() -> Any:
    import keras

    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(16, 1, activation="swish")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="small_cnn")


def transformer_gelu() -> Any:
    """One Transformer encoder block: Embedding + MHA + LayerNorm + exact-GELU feed-forward."""
    import keras

    inp = keras.Input((16,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(100, 32)(inp)
    attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
    x = keras.layers.LayerNormalization()(x + attn)
    ff = keras.layers.Dense(64, activation="gelu")(x)  # Keras 3 "gelu" is exact (erf), not tanh
    ff = keras.layers.Dense(32)(ff)
    x = keras.layers.LayerNormalization()(x + ff)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, keras.layers.Dense(3)(x), name="transformer_gelu")


def lstm_text() -> Any:
    """Stacked LSTM over masked embeddings (Embedding(mask_zero=True), return_sequences)."""
    import keras

    inp = keras.Input((8,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 16, mask_zero=True)(inp)
    x = keras.layers.LSTM(16, return_sequences=True)(x)
    x = keras.layers.LSTM(16)(x)
    return keras.Model(inp, keras.layers.Dense(4)(x), name="lstm_text")


def gru_text() -> Any:
    """Bidirectional GRU (return_sequences) then a GRU."""
    import keras

    inp = keras.Input((8,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 16)(inp)
    x = keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True))(x)
    x = keras.layers.GRU(8)(x)
    return keras.Model(inp, keras.layers.Dense(4)(x), name="gru_text")


def conv1d_audio() -> Any:
    import keras

    inp = keras.Input((1600, 1), name="waveform")  # 0.1 s at 16 kHz
    x = keras.layers.Conv1D(8, 9, strides=2, activation="relu")(inp)
    x = keras.layers.MaxPooling1D(4)(x)
    x = keras.layers.Conv1D(16, 5, padding="same", activation="relu")(x)
    x = keras.layers.AveragePooling1D(2)(x)
    x = keras.layers.Conv1D(16, 3, dilation_rate=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, keras.layers.Dense(5)(x), name="conv1d_audio")


def _application(factory: str, size: int, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        cls = getattr(keras.applications, factory)
        return cls(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None, **kwargs)

    build.__name__ = factory
    return build


def _arch(
    name: str,
    build: Callable[[], Any],
    inputs: Callable[[Any, Any, int], list[Any]],
    slow: bool,
    tflite_tol: float = 1e-4,
    fp16_tol: float = 5e-2,
) -> Architecture:
    return Architecture(name, build, inputs, slow, tflite_tol, fp16_tol)


# Deep networks with random weights amplify float rounding: their logits are large sums that mostly
# cancel (EfficientNetB0 at 32x32 gives logits near 4e3). Measured relative errors on this machine
# (benchmarks/RESULTS_arch.md): float32 TFLite vs Keras 1.4e-3 for EfficientNetB0, 1.6e-4 for ResNet50,
# 1.2e-4 for InceptionV3; the fp16 Core ML program 0.07 (MobileNetV2) to 0.19 (InceptionV3). Their
# tolerances sit above those figures, still far below the O(1) error of a wrong layout or op.
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in [
        _arch("small_cnn", small_cnn, _floats, slow=False),
        _arch("transformer_gelu", transformer_gelu, _tokens(100), slow=False),
        _arch("lstm_text", lstm_text, _tokens(50, pad_tail=3), slow=False),
        _arch("gru_text", gru_text, _tokens(50), slow=False),
        _arch("conv1d_audio", conv1d_audio, _floats, slow=False),
        _arch("mobilenet_v1", _application("MobileNet", 32, alpha=0.25), _images, slow=True),
        _arch("mobilenet_v2", _application("MobileNetV2", 32, alpha=0.35), _images, slow=True, fp16_tol=0.15),
        _arch("mobilenet_v3_small", _application("MobileNetV3Small", 32, alpha=0.75), _images, slow=True),
        _arch("mobilenet_v3_large", _application("MobileNetV3Large", 32, alpha=0.75), _images, slow=True),
        _arch("efficientnet_b0", _application("EfficientNetB0", 32), _images, True, 5e-3, 0.5),
        _arch("resnet50", _application("ResNet50", 32), _images, True, 1e-3, 0.4),
        _arch("densenet121", _application("DenseNet121", 32), _images, slow=True),
        _arch("inception_v3", _application("InceptionV3", 75), _images, True, 1e-3, 0.4),
        _arch("nasnet_mobile", _application("NASNetMobile", 32), _images, slow=True),
    ]
}


def tflite_ops(flatbuffer: bytes) -> list[str]:
    """Sorted distinct op names in a .tflite flatbuffer (builtin names, or custom/Flex op names)."""
    from tensorflow.lite.python import analyzer

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        analyzer.ModelAnalyzer.analyze(model_content=flatbuffer)
    return sorted(set(re.findall(r"Op#\d+ (\w+)", out.getvalue())))


def run_tflite(flatbuffer: bytes, feeds: dict[str, Any]) -> list[Any]:
    """Outputs (ordered by output name) of one run of the ``serving_default`` signature, fed by input name.

    Feeding by name matters: the converter does not keep the model's input order (a model with inputs
    ``a, b`` came out with tensor 0 = ``b``).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    outputs = interpreter.get_signature_runner("serving_default")(**feeds)
    return [outputs[name] for name in sorted(outputs)]


def named_feeds(model: Any, feeds: list[Any]) -> dict[str, Any]:
    """``feeds`` (in ``model.inputs`` order) keyed by the names of the exported signature."""
    from edgeexport.sources.keras_compat import fixed_input_signature

    return {spec.name: value for spec, value in zip(fixed_input_signature(model), feeds, strict=True)}


def coreml_convert(saved_model: Path, *, fp32: bool = False) -> Any:
    """``ct.convert`` of the ``serve`` endpoint of ``saved_model`` (mlprogram; fp16 compute unless fp32)."""
    import coremltools as ct
    import tensorflow as tf

    from edgeexport.targets.coreml_tf_ops import register_missing_tf_ops

    register_missing_tf_ops()
    loaded = tf.saved_model.load(str(saved_model))  # must outlive the conversion: it owns the variables
    function = loaded.serve.get_concrete_function()
    precision = ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16
    model = ct.convert([function], source="tensorflow", convert_to="mlprogram", compute_precision=precision)
    del loaded
    return model


def coreml_ops(mlmodel: Any) -> list[str]:
    """Sorted distinct MIL op types in a converted mlprogram (main function and nested blocks)."""
    seen: set[str] = set()

    def visit(block: Any) -> None:
        for op in block.operations:
            seen.add(op.op_type)
            for inner in op.blocks:
                visit(inner)

    for function in mlmodel._mil_program.functions.values():
        visit(function)
    return sorted(seen)


def relative_error(reference: Any, actual: Any) -> float:
    """max |reference - actual| divided by max |reference| (1e-12 floor): error relative to output scale."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    diff = np.abs(ref - np.asarray(actual, dtype=np.float64)).max()
    return float(diff / max(np.abs(ref).max(), 1e-12))


@dataclass
class Row:
    name: str
    params: int
    notes: str
    tflite_s: float | None = None
    tflite_kb: float | None = None
    tflite_rel_err: float | None = None
    tflite_flex: bool | None = None
    tflite_error: str = ""
    coreml_s: float | None = None
    coreml_ops: int | None = None
    coreml_fp16_rel_err: float | None = None
    coreml_error: str = ""


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}"


def measure(arch: Architecture, workdir: Path) -> Row:
    """Build, prepare, export and convert one architecture to both targets; errors are recorded, not raised."""
    import numpy as np

    from edgeexport.sources.keras_compat import export_saved_model, prepare_for_export

    model = arch.model()
    feeds = arch.inputs(model, np.random.default_rng(SEED), 1)
    reference = np.asarray(model(feeds if len(feeds) > 1 else feeds[0], training=False))
    prepared, notes = prepare_for_export(model)
    row = Row(arch.name, int(model.count_params()), "; ".join(notes))
    saved = export_saved_model(prepared, workdir / arch.name)
    try:
        import tensorflow as tf

        start = time.perf_counter()
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
        row.tflite_s = time.perf_counter() - start
        row.tflite_kb = len(flatbuffer) / 1024
        row.tflite_flex = any(op.startswith("Flex") or op == "CUSTOM" for op in tflite_ops(flatbuffer))
        row.tflite_rel_err = relative_error(reference, run_tflite(flatbuffer, named_feeds(model, feeds))[0])
    except Exception as exc:  # noqa: BLE001 - a benchmark records every failure and goes on
        row.tflite_error = _short(exc)
    try:
        start = time.perf_counter()
        mlmodel = coreml_convert(saved)
        row.coreml_s = time.perf_counter() - start
        row.coreml_ops = len(coreml_ops(mlmodel))
        row.coreml_fp16_rel_err = _mil_error(mlmodel, workdir / f"{arch.name}.mlpackage", model, feeds, reference)
    except Exception as exc:  # noqa: BLE001
        row.coreml_error = _short(exc)
    return row


def _mil_error(mlmodel: Any, path: Path, model: Any, feeds: list[Any], reference: Any) -> float | None:
    """Relative error of the (fp16) Core ML program run by edgeexport's numpy MIL executor, if present."""
    import numpy as np

    try:
        from edgeexport.runtimes.mil import load_program
    except ImportError:
        return None
    mlmodel.save(str(path))
    (value,) = load_program(path).run(named_feeds(model, feeds)).values()
    return relative_error(reference, np.asarray(value, dtype=np.float32).reshape(reference.shape))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    print(
        "| model | params | TFLite s | TFLite KB | TFLite rel err | Flex | Core ML s | MIL op types "
        "| Core ML fp16 rel err | notes / errors |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for r in rows:
        extra = "; ".join(x for x in (r.notes, r.tflite_error, r.coreml_error) if x)
        flex = "-" if r.tflite_flex is None else ("YES" if r.tflite_flex else "no")
        print(
            f"| {r.name} | {r.params:,} | {_fmt(r.tflite_s, '.2f')} | {_fmt(r.tflite_kb, '.0f')} | "
            f"{_fmt(r.tflite_rel_err, '.1e')} | {flex} | {_fmt(r.coreml_s, '.2f')} | "
            f"{'-' if r.coreml_ops is None else r.coreml_ops} | {_fmt(r.coreml_fp16_rel_err, '.1e')} | {extra} |"
        )


def long_lstm(steps: int) -> Architecture:
    """A single LSTM(16) over ``steps`` frames of 8 features: how unrolling scales with sequence length."""

    def build() -> Any:
        import keras

        inp = keras.Input((steps, 8), name="frames")
        return keras.Model(inp, keras.layers.Dense(2)(keras.layers.LSTM(16)(inp)), name=f"lstm_{steps}_steps")

    return Architecture(f"lstm_{steps}_steps", build, _floats, slow=True)


def rnn_loop_vs_unroll(workdir: Path, steps: list[int], repeats: int = 200) -> None:
    """TFLite size, conversion time and p50 latency of RNN models as a WHILE loop (fixed batch) vs unrolled."""
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from edgeexport.sources.keras_compat import export_saved_model, prepare_for_export

    print("| model | form | convert s | TFLite KB | p50 ms (1 thread) | ops |")
    print("|---|---|---:|---:|---:|---|")
    for arch in [ARCHITECTURES["lstm_text"], ARCHITECTURES["gru_text"], *(long_lstm(n) for n in steps)]:
        name = arch.name
        model = arch.model()
        feeds = arch.inputs(model, np.random.default_rng(SEED), 1)
        unrolled, _ = prepare_for_export(model)
        for form, candidate in (("WHILE loop", model), ("unrolled", unrolled)):
            start = time.perf_counter()
            saved = export_saved_model(candidate, workdir / f"{name}_{form[:5]}")
            flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
            seconds = time.perf_counter() - start
            interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], feeds[0])
            interpreter.invoke()  # warm-up: first run allocates
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                interpreter.invoke()
                times.append(time.perf_counter() - start)
            ops = tflite_ops(flatbuffer)
            shown = ", ".join(ops) if len(ops) < 20 else f"{len(ops)} op types"
            print(
                f"| {name} | {form} | {seconds:.2f} | {len(flatbuffer) / 1024:.0f} | "
                f"{1000 * float(np.median(times)):.3f} | {shown} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"architectures to run (default all): {', '.join(ARCHITECTURES)}")
    parser.add_argument("--fast", action="store_true", help="only the architectures not marked slow")
    parser.add_argument("--rnn-loop-vs-unroll", action="store_true", help="compare TFLite RNN forms instead")
    parser.add_argument(
        "--steps", type=int, nargs="*", default=[64, 256], help="sequence lengths of extra LSTMs for --rnn-loop-vs-unroll"
    )
    args = parser.parse_args(argv)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="edgeexport-arch-") as tmp:
        if args.rnn_loop_vs_unroll:
            rnn_loop_vs_unroll(Path(tmp), args.steps)
            return 0
        unknown = [n for n in args.names if n not in ARCHITECTURES]
        if unknown:
            parser.error(f"unknown architecture(s): {', '.join(unknown)}")
        names = args.names or [n for n, a in ARCHITECTURES.items() if not (args.fast and a.slow)]
        rows = []
        for name in names:
            rows.append(measure(ARCHITECTURES[name], Path(tmp)))
            print(f"done {name}", file=sys.stderr, flush=True)
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
