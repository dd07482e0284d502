"""Real converters: decoder ops are costed, recurrent layers are in the MAC count, the host is calibrated on
first use, and bench/simulate agree on threads (issue 12, items 5 and 6). The session's XDG_CONFIG_HOME is a
temporary directory (tests/conftest.py), so nothing here touches the real user config."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeexport.simulate import read_graph, simulate


def _seg_model() -> Any:
    """A small segmentation head: two strided convs, Conv2DTranspose, UpSampling2D, a 1x1 conv."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.UpSampling2D(2)(x)
    return keras.Model(inp, L.Conv2D(2, 1)(x))


@pytest.fixture(scope="module")
def seg_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeexport.simulate.microbench import keras_to_tflite

    path = tmp_path_factory.mktemp("seg") / "seg.fp32.tflite"
    path.write_bytes(keras_to_tflite(_seg_model(), "fp32"))
    return path


def test_transposed_conv_and_upsampling_are_costed(seg_tflite: Path) -> None:
    graph = read_graph(seg_tflite)
    by_type = {op.op_type: op for op in graph.ops}
    # 8x8x16 input scattered through a 3x3 kernel into 8 channels
    assert by_type["TRANSPOSE_CONV"].macs == 8 * 8 * 16 * 3 * 3 * 8
    tiles = [op for op in graph.ops if op.op_type == "TILE"]
    assert tiles and all(op.ops == sum(graph.tensors[o].elements for o in op.outputs) for op in tiles)
    # hand count of the whole model: 16x16x8 x 27 + 8x8x16 x 72 + 8x8x16 x 72 + 32x32x2 x 8
    assert graph.macs == 16 * 16 * 8 * 27 + 8 * 8 * 16 * 72 + 8 * 8 * 16 * 72 + 32 * 32 * 2 * 8
    est = simulate(seg_tflite, _calibrated_like_host(), threads=1)
    assert est.uncosted_ops == ()


def _calibrated_like_host() -> Any:
    from edgeexport.catalog.devices import DEVICE_DIR, load_device

    return load_device(DEVICE_DIR / "pixel-8.toml")


def test_inspect_counts_the_gru_layers(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(50, 16)(inp)
    x = keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True))(x)
    x = keras.layers.GRU(8)(x)
    path = tmp_path / "gru.keras"
    keras.Model(inp, keras.layers.Dense(4)(x)).save(path)
    result = run_cli("inspect", path, "--json")
    assert result.code == 0, result.err
    macs = json.loads(result.out)["summary"]["macs"]
    # per step and direction: 3 gates x 8 units x (inputs + 8); 8 steps; the Bi-GRU sees 16 features, the
    # second GRU the 16 concatenated outputs
    recurrent = 2 * 8 * 3 * 8 * (16 + 8) + 8 * 3 * 8 * (16 + 8)
    assert recurrent <= macs < recurrent + 2000


def test_simulate_host_without_calibration_says_placeholder(seg_tflite: Path, run_cli: Callable[..., Any]) -> None:
    from edgeexport.catalog.devices import user_device_dir

    assert not (user_device_dir() / "host.toml").exists()
    result = run_cli("simulate", seg_tflite, "--device", "host", "--no-calibrate")
    assert result.code == 0, result.err
    assert "uncalibrated placeholder" in result.out and "calibrating" not in result.err
    assert not (user_device_dir() / "host.toml").exists()


def test_bench_defaults_to_the_threads_simulate_assumes(seg_tflite: Path, run_cli: Callable[..., Any]) -> None:
    from edgeexport.simulate.bench import default_threads

    result = run_cli("bench", seg_tflite, "--json", "--runs", "5")
    assert result.code == 0, result.err
    assert json.loads(result.out)["threads"] == default_threads() == min(os.cpu_count() or 1, 4)


@pytest.mark.slow
def test_first_simulate_of_the_host_calibrates_once(seg_tflite: Path, run_cli: Callable[..., Any],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    first = run_cli("simulate", seg_tflite, "--device", "host")
    assert first.code == 0, first.err
    cached = tmp_path / "edgeexport" / "devices" / "host.toml"
    assert cached.is_file() and str(cached) in first.err
    assert first.err.count("calibrating this machine") == 1
    assert "uncalibrated placeholder" not in first.out and "calibration residuals" in first.out
    second = run_cli("simulate", seg_tflite, "--device", "host")
    assert second.code == 0 and "calibrating" not in second.err
