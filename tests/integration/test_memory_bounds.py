"""Bounded memory (issue 17): the MAC count of a Keras model is profiled on its traced function, without the
frozen copy of every weight, and must equal the count on the frozen graph (real TensorFlow models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SAMPLES


def _mobilenet(tmp: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    path = tmp / "mnv2.keras"
    keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None).save(path)
    return path


@pytest.mark.parametrize("which", ["digits_cnn", "mobilenetv2"])
def test_function_macs_equal_frozen_graph_macs(tmp_path: Path, which: str) -> None:
    from edgeexport.sources import load, open_source
    from edgeexport.sources.tfgraph import count_function_macs, count_macs_noted, frozen_graph_def

    path = SAMPLES / "digits_cnn.keras" if which == "digits_cnn" else _mobilenet(tmp_path)
    model = load(open_source(path))
    concrete = model._concrete_function()  # type: ignore[attr-defined]
    direct, frozen = count_function_macs(concrete), count_macs_noted(frozen_graph_def(concrete))
    assert direct == frozen
    assert direct[0] > (200_000 if which == "digits_cnn" else 10_000_000)
    assert model.summary.macs == direct[0]
