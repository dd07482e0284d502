"""bench and the LiteRT runner on real tiny artifacts (fp32 and full-integer int8)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeexport.errors import DataError, ModelFormatError
from edgeexport.runtimes.tflite import TfliteRunner
from edgeexport.simulate.bench import bench


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 2), batch_size=1), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    out = tmp_path_factory.mktemp("bench")
    paths = {"fp32": out / "m_fp32.tflite", "int8": out / "m_int8.tflite"}
    paths["fp32"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    rng = np.random.default_rng(0)

    def representative() -> Iterator[list[np.ndarray]]:
        for _ in range(8):
            yield [rng.random((1, 8, 8, 2), dtype=np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    paths["int8"].write_bytes(converter.convert())
    return paths


def test_bench_reports_ordered_percentiles(models: dict[str, Path]) -> None:
    result = bench(models["fp32"], threads=1, runs=20)
    assert result.runs == 20 and len(result.samples_ms) == 20
    assert result.p50_ms > 0
    assert result.p90_ms >= result.p50_ms >= result.min_ms > 0
    assert result.load_ms > 0
    assert result.peak_memory_bytes >= 0


def test_bench_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError):
        bench(tmp_path / "missing.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFormatError):
        bench(corrupt)


def test_cli_bench_json(models: dict[str, Path], run_cli: Callable[..., Any]) -> None:
    result = run_cli("bench", models["int8"], "--threads", "1", "--runs", "10", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["runs"] == 10 and data["p90_ms"] >= data["p50_ms"] > 0


def test_runner_quantizes_inputs_and_dequantizes_outputs(models: dict[str, Path]) -> None:
    fp32, int8 = TfliteRunner(models["fp32"], threads=1), TfliteRunner(models["int8"], threads=1)
    assert int8.inputs[0].dtype == "int8" and int8.inputs[0].quantization is not None
    assert int8.outputs[0].quantization is not None
    assert fp32.inputs[0].quantization is None
    x = np.random.default_rng(1).random((5, 8, 8, 2), dtype=np.float32)  # batch 5 on a batch-1 artifact
    ref = fp32.run({fp32.inputs[0].name: x})[fp32.outputs[0].name]
    got = int8.run({int8.inputs[0].name: x})[int8.outputs[0].name]
    assert ref.shape == got.shape == (5, 3)
    assert got.dtype == np.float32
    scale = int8.outputs[0].quantization.scale  # type: ignore[union-attr]
    assert np.max(np.abs(ref - got)) < 6 * scale + 0.02 * np.max(np.abs(ref))
    raw = int8.run_raw({int8.inputs[0].name: np.zeros((1, 8, 8, 2), np.int8)})
    assert raw[int8.outputs[0].name].dtype == np.int8


def test_runner_errors_and_tensor_details(models: dict[str, Path]) -> None:
    runner = TfliteRunner(models["fp32"].read_bytes(), preserve_all_tensors=True)
    with pytest.raises(DataError):
        runner.run({"nope": np.zeros((1, 8, 8, 2), np.float32), "other": np.zeros(1)})
    runner.run({runner.inputs[0].name: np.ones((1, 8, 8, 2), np.float32)})
    details = runner.tensor_details()
    assert len(details) > 4
    assert any(d["value"] is not None and d["value"].shape == (1, 6, 6, 4) for d in details)
    with pytest.raises(ModelFormatError):
        TfliteRunner(b"\x00\x00\x00\x00TFL3" + b"\x00" * 16)
