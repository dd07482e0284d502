"""Common Keras 3 architectures convert to TFLite (numerically equal, builtin ops only) and to Core ML.

Pipeline under test (edgeexport.sources.keras_compat + coreml_tf_ops): prepare_for_export ->
export_saved_model (one fixed-shape ``serve`` endpoint, batch 1) -> TFLiteConverter.from_saved_model and
coremltools.convert of the endpoint's concrete function. The model builders live in
benchmarks/architectures.py so the benchmark and the tests convert the same models.

Core ML cannot run on Linux: its numbers are checked only when edgeexport.runtimes.mil (a numpy MIL
executor) is importable; otherwise the test checks that conversion succeeds and what the program holds.
Unmarked tests are the fast subset (about 40 s here); `-m slow` adds keras.applications models.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[2]
# Errors are relative to the largest |output| of the Keras model. Float32 TFLite must be within the
# architecture's tflite_tol (1e-4 unless its entry in benchmarks/architectures.py says why not); a float32
# Core ML program within 10x that (at least 1e-3: a different kernel order); the shipped fp16 program within
# fp16_tol (11-bit mantissas; errors compound with depth).
TFLITE_REL_TOL = 1e-4
COREML_FP32_MIN_REL_TOL = 1e-3


def _load_benchmark() -> ModuleType:
    path = REPO / "benchmarks" / "architectures.py"
    spec = importlib.util.spec_from_file_location("edgeexport_bench_architectures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered while it executes
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()
FAST = [name for name, arch in bench.ARCHITECTURES.items() if not arch.slow]
SLOW = [name for name, arch in bench.ARCHITECTURES.items() if arch.slow]
PARAMS = [pytest.param(n, id=n) for n in FAST] + [pytest.param(n, id=n, marks=pytest.mark.slow) for n in SLOW]

# MIL ops each converted program must contain: the part of the model most likely to be mistranslated.
EXPECTED_MIL_OPS: dict[str, set[str]] = {
    "small_cnn": {"conv", "max_pool", "relu", "relu6", "silu", "softmax"},
    "transformer_gelu": {"erf", "softmax", "gather", "matmul", "rsqrt"},
    "lstm_text": {"sigmoid", "tanh", "select"},  # select: the Embedding mask keeps the state at padded steps
    "gru_text": {"sigmoid", "tanh", "reverse"},  # reverse: the backward half of the Bidirectional GRU
    "conv1d_audio": {"conv", "max_pool", "avg_pool", "reduce_mean"},
}


class Converted:
    """One architecture taken through the pipeline once and shared by the tests of that architecture."""

    def __init__(self, name: str, workdir: Path) -> None:
        from edgeexport.sources.keras_compat import (
            export_saved_model,
            prepare_for_export,
        )

        self.arch = bench.ARCHITECTURES[name]
        self.model = self.arch.model()
        self.feeds = self.arch.inputs(self.model, np.random.default_rng(bench.SEED), 1)
        self.named_feeds = bench.named_feeds(self.model, self.feeds)
        self.reference = np.asarray(self.model(self.feeds if len(self.feeds) > 1 else self.feeds[0], training=False))
        self.prepared, self.notes = prepare_for_export(self.model)
        self.saved_model = export_saved_model(self.prepared, workdir / name)
        self._tflite: bytes | None = None
        self._coreml: Any = None

    @property
    def tflite(self) -> bytes:
        if self._tflite is None:
            import tensorflow as tf

            self._tflite = tf.lite.TFLiteConverter.from_saved_model(str(self.saved_model)).convert()
        return self._tflite

    @property
    def coreml(self) -> Any:
        if self._coreml is None:
            self._coreml = bench.coreml_convert(self.saved_model)
        return self._coreml


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache: dict[str, Converted] = {}
    root = tmp_path_factory.mktemp("architectures")

    def get(name: str) -> Converted:
        if name not in cache:
            cache[name] = Converted(name, root)
        return cache[name]

    return get


@pytest.mark.parametrize("name", PARAMS)
def test_tflite_matches_keras_with_builtin_ops(name: str, converted: Any) -> None:
    case = converted(name)
    ops = bench.tflite_ops(case.tflite)
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], f"non-builtin ops: {ops}"
    assert "WHILE" not in ops, "RNNs should reach TFLite unrolled by prepare_for_export"
    (output,) = bench.run_tflite(case.tflite, case.named_feeds)
    assert output.shape == case.reference.shape
    assert np.isfinite(case.reference).all() and np.abs(case.reference).max() > 1e-3, "degenerate reference"
    assert bench.relative_error(case.reference, output) < case.arch.tflite_tol


@pytest.mark.parametrize("name", PARAMS)
def test_coreml_converts(name: str, converted: Any) -> None:
    case = converted(name)
    ops = set(bench.coreml_ops(case.coreml))
    assert not ops & {"while_loop", "list_read", "list_write"}, f"loop ops left in the program: {sorted(ops)}"
    missing = EXPECTED_MIL_OPS.get(name, {"conv"}) - ops
    assert not missing, f"expected MIL ops {sorted(missing)} not in {sorted(ops)}"
    spec = case.coreml.get_spec()
    assert [i.name for i in spec.description.input] == [s.name for s in _signature(case.prepared)]


@pytest.mark.parametrize("name", PARAMS)
def test_coreml_numerics_with_mil_executor(name: str, converted: Any, tmp_path: Path) -> None:
    """fp32 compute must match Keras tightly; the shipped fp16 program within fp16's precision."""
    mil = pytest.importorskip("edgeexport.runtimes.mil")
    case = converted(name)
    feeds = case.named_feeds
    fp32_tol = max(COREML_FP32_MIN_REL_TOL, 10 * case.arch.tflite_tol)
    for label, model, tolerance in (
        ("fp32", bench.coreml_convert(case.saved_model, fp32=True), fp32_tol),
        ("fp16", case.coreml, case.arch.fp16_tol),
    ):
        path = tmp_path / f"{name}_{label}.mlpackage"
        model.save(str(path))
        outputs = mil.load_program(path).run(feeds)
        (value,) = outputs.values()
        error = bench.relative_error(case.reference, np.asarray(value, dtype=np.float32).reshape(case.reference.shape))
        assert error < tolerance, f"{label} program: relative error {error:.2e}"


def _signature(model: Any) -> list[Any]:
    from edgeexport.sources.keras_compat import fixed_input_signature

    return fixed_input_signature(model)


def test_rnn_models_are_unrolled_and_equal_before_export(converted: Any) -> None:
    """The unrolled clone computes what the original computes, masking included, and says what it changed."""
    for name, layers in (("lstm_text", 2), ("gru_text", 2)):
        case = converted(name)
        assert len(case.notes) == 1 and case.notes[0].startswith(f"unrolled {layers} recurrent layers")
        assert case.prepared is not case.model
        feeds = case.feeds[0]
        np.testing.assert_allclose(np.asarray(case.prepared(feeds)), case.reference, rtol=0, atol=1e-6)


def test_masked_steps_change_nothing(converted: Any) -> None:
    """Padded steps are skipped by the TFLite model too: the mask survived unrolling.

    An LSTM has no notion of position, so skipping the padding means the padding can move from the end
    to the start without changing the output.
    """
    case = converted("lstm_text")
    padded = case.named_feeds["tokens"].copy()
    assert (padded[:, -3:] == 0).all()
    (first,) = bench.run_tflite(case.tflite, {"tokens": padded})
    (moved,) = bench.run_tflite(case.tflite, {"tokens": np.roll(padded, 3, axis=1)})
    shorter = padded.copy()
    shorter[:, -4] = 0  # one more padded step changes the output, so the mask is really consulted
    (second,) = bench.run_tflite(case.tflite, {"tokens": shorter})
    assert bench.relative_error(case.reference, first) < TFLITE_REL_TOL
    np.testing.assert_allclose(moved, first, rtol=0, atol=1e-5)
    assert np.abs(first - second).max() > 1e-4


def test_models_without_rnn_are_returned_unchanged(converted: Any) -> None:
    case = converted("small_cnn")
    assert case.prepared is case.model and case.notes == []


def test_fixed_signature_names_shapes_and_dtypes() -> None:
    import keras

    from edgeexport.sources.keras_compat import fixed_input_signature

    tokens = keras.Input((16,), dtype="int32", name="tokens")
    image = keras.Input((8, 8, 3), name="image pixels")  # a space is not valid in a signature name
    x = keras.layers.Concatenate()([keras.layers.Flatten()(image), keras.ops.cast(tokens, "float32")])
    model = keras.Model([tokens, image], keras.layers.Dense(2)(x))
    specs = fixed_input_signature(model, batch=2)
    assert [(s.name, tuple(s.shape), s.dtype.name) for s in specs] == [
        ("tokens", (2, 16), "int32"),
        ("image_pixels", (2, 8, 8, 3), "float32"),
    ]


def test_unknown_dimension_is_bad_input_naming_the_input() -> None:
    import keras

    from edgeexport.errors import BadInputError
    from edgeexport.sources.keras_compat import fixed_input_signature

    inp = keras.Input((None, 8), name="frames")
    model = keras.Model(inp, keras.layers.GlobalAveragePooling1D()(inp))
    with pytest.raises(BadInputError, match="'frames'.*unknown dimension"):
        fixed_input_signature(model)


def test_rnn_with_unknown_steps_is_unsupported() -> None:
    import keras

    from edgeexport.errors import UnsupportedError
    from edgeexport.sources.keras_compat import prepare_for_export

    inp = keras.Input((None, 4), name="frames")
    model = keras.Model(inp, keras.layers.GRU(3)(inp))
    with pytest.raises(UnsupportedError, match="unknown number of time steps"):
        prepare_for_export(model)


def test_multi_input_model_exports_and_converts(tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    from edgeexport.sources.keras_compat import export_saved_model

    keras.utils.set_random_seed(3)
    a = keras.Input((6,), name="a")
    b = keras.Input((4,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Concatenate()([a, keras.layers.Dense(6)(b)])))
    saved = export_saved_model(model, tmp_path / "two_inputs")
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((1, 6), dtype=np.float32), rng.standard_normal((1, 4), dtype=np.float32)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=flatbuffer).get_signature_runner("serving_default")
    assert sorted(runner.get_input_details()) == ["a", "b"]
    (got,) = runner(a=xa, b=xb).values()
    assert bench.relative_error(np.asarray(model([xa, xb])), got) < TFLITE_REL_TOL
    swapped = keras.Model([b, a], model([a, b]))  # input order must not matter: feeds go by name
    (got_swapped,) = bench.run_tflite(
        tf.lite.TFLiteConverter.from_saved_model(str(export_saved_model(swapped, tmp_path / "swapped"))).convert(),
        {"a": xa, "b": xb},
    )
    np.testing.assert_allclose(got_swapped, got, rtol=0, atol=1e-6)
    mlmodel = bench.coreml_convert(saved)
    assert [i.name for i in mlmodel.get_spec().description.input] == ["a", "b"]


def test_sequential_and_nested_rnns_are_unrolled() -> None:
    """RNNs inside a Sequential nested in a Functional model are found and unrolled; the rest is shared."""
    import keras

    from edgeexport.sources.keras_compat import prepare_for_export

    keras.utils.set_random_seed(5)
    inner = keras.Sequential([keras.Input((6, 3)), keras.layers.SimpleRNN(4, return_sequences=True)], name="inner")
    inp = keras.Input((6, 3), name="frames")
    head = keras.layers.Dense(2)
    model = keras.Model(inp, head(keras.layers.LSTM(5)(inner(inp))))
    prepared, notes = prepare_for_export(model)
    rnns = [
        layer
        for outer in prepared.layers
        for layer in (getattr(outer, "layers", None) or [outer])
        if isinstance(layer, keras.layers.RNN)
    ]
    assert len(rnns) == 2 and all(layer.unroll for layer in rnns)
    assert len(notes) == 1 and notes[0].startswith("unrolled 2 recurrent layers")
    assert head in prepared.layers  # untouched layers are shared, not copied
    x = np.random.default_rng(1).standard_normal((2, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(prepared(x)), np.asarray(model(x)), rtol=0, atol=1e-6)
    assert not any(layer.unroll for layer in model.layers if isinstance(layer, keras.layers.RNN))


def test_long_sequences_keep_their_loop_for_tflite_only() -> None:
    import keras

    from edgeexport.sources.keras_compat import (
        TFLITE_UNROLL_MAX_STEPS,
        prepare_for_export,
    )

    inp = keras.Input((TFLITE_UNROLL_MAX_STEPS + 1, 4), name="frames")
    model = keras.Model(inp, keras.layers.GRU(3)(inp))
    kept, kept_notes = prepare_for_export(model, target="tflite")
    assert kept is model and kept_notes == []
    unrolling: tuple[str | None, ...] = ("coreml", None)  # Core ML has no loop path: always unrolled
    for target in unrolling:
        prepared, notes = prepare_for_export(model, target=target)
        assert prepared is not model and notes and prepared.layers[-1].unroll
