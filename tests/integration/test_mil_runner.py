"""CoremlRunner: the one run(feeds) contract over Core ML (macOS) or the numpy MIL executor (elsewhere)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeexport.errors import DataError, ModelFormatError, UnsupportedError  # noqa: E402
from edgeexport.runtimes.coreml import CoremlRunner  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A small Keras model and its fp16 ML Program converted by coremltools."""
    import coremltools as ct
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(5)
    i = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    model = keras.Model(i, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    fn = tf.function(lambda t: model(t, training=False), input_signature=[tf.TensorSpec((1, 8, 8, 2), tf.float32)])
    path = tmp_path_factory.mktemp("runner") / "tiny.mlpackage"
    ct.convert([fn.get_concrete_function()], source="tensorflow", convert_to="mlprogram",
               compute_precision=ct.precision.FLOAT16).save(str(path))
    return path, model


@pytest.fixture(scope="module")
def tiny_package(tiny: tuple[Path, object]) -> Path:
    return tiny[0]


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the fallback used where Core ML cannot run")
def test_auto_falls_back_to_the_mil_executor_off_macos(tiny: tuple[Path, object]) -> None:
    tiny_package, model = tiny
    runner = CoremlRunner(tiny_package)
    assert runner.runtime_name == "mil"
    assert [s.shape for s in runner.inputs] == [(1, 8, 8, 2)] and [s.shape for s in runner.outputs] == [(1, 3)]
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 2)).astype(np.float32)
    (got,) = runner.run({runner.inputs[0].name: x}).values()
    want = np.asarray(model(x))  # type: ignore[operator]
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-2, atol=2e-3)
    (exact,) = CoremlRunner(tiny_package, runtime="mil", precision="fp32").run({runner.inputs[0].name: x}).values()
    assert exact.dtype == np.float32
    # fp32 execution of an fp16 program: only the fp16-stored weights differ from Keras (about 1e-4 relative).
    np.testing.assert_allclose(exact, want, rtol=1e-3, atol=1e-4)
    assert not np.array_equal(exact, got.astype(np.float32))


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML is available on macOS")
def test_forcing_coreml_off_macos_is_unsupported(tiny_package: Path) -> None:
    with pytest.raises(UnsupportedError, match="needs macOS"):
        CoremlRunner(tiny_package, runtime="coreml")


def test_bad_options_and_paths(tiny_package: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError):
        CoremlRunner(tiny_package, runtime="tpu")
    with pytest.raises(DataError):
        CoremlRunner(tiny_package, precision="int4")
    with pytest.raises(ModelFormatError):
        CoremlRunner(tmp_path / "nope.mlpackage")
