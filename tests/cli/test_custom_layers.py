"""``--import MODULE`` loads a model with a ``register_keras_serializable`` layer from the CLI, safe mode on."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CliResult

Run = Callable[..., CliResult]
MODULE = "edgeexport_test_custom_layers"
SOURCE = '''
import keras


@keras.saving.register_keras_serializable(package="edgetest")
class ScaleShift(keras.layers.Layer):
    """y = x * scale + shift, one weight each per feature."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="shift")

    def call(self, x):
        return x * self.scale + self.shift
'''


@pytest.fixture
def custom_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A .keras file using edgetest>ScaleShift, saved, then the layer unregistered and its module forgotten."""
    import keras

    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(MODULE)
    inputs = keras.Input((6,), name="features")
    layer = module.ScaleShift()
    model = keras.Model(inputs, keras.layers.Dense(3)(layer(inputs)))
    layer.set_weights([np.linspace(0.5, 2.0, 6, dtype=np.float32), np.linspace(-1, 1, 6, dtype=np.float32)])
    path = tmp_path / "custom.keras"
    model.save(path)
    keras.saving.get_custom_objects().pop("edgetest>ScaleShift")
    del sys.modules[MODULE]
    return path


def test_a_custom_layer_needs_import_and_loads_with_it(run_cli: Run, custom_model: Path, tmp_path: Path) -> None:
    refused = run_cli("inspect", custom_model)
    assert refused.code == 3 and "Traceback" not in refused.err
    assert "custom layer ScaleShift: pass --import MODULE" in refused.err
    out = tmp_path / "out"
    result = run_cli("convert", custom_model, "--import", MODULE, "--target", "tflite", "--out", out, "--samples", "16")
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["options"]["imports"] == [MODULE]
    verification = report["artifacts"][0]["verification"]
    assert verification["passed"] is True
    missing = run_cli("inspect", custom_model, "--import", "no_such_module_xyz")
    assert missing.code == 3 and "--import no_such_module_xyz: module not found" in missing.err
