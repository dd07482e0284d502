"""simulate on real artifacts: a tiny Keras model converted to .tflite (fp32, int8) and .mlpackage, every
shipped device profile, budgets, the CLI, and the no-TensorFlow guarantee for .tflite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeexport.catalog import list_devices, load_device
from edgeexport.simulate import read_graph, simulate


def _tiny_keras(shape: tuple[int, int, int] = (16, 16, 3), channels: int = 8) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(shape, batch_size=1),
        keras.layers.Conv2D(channels, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4),
        keras.layers.Softmax(),
    ])


def _to_tflite(model: Any, int8: bool) -> bytes:
    from edgeexport.simulate.microbench import keras_to_tflite

    return keras_to_tflite(model, "int8" if int8 else "fp32")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import coremltools as ct
    import tensorflow as tf

    out = tmp_path_factory.mktemp("sim")
    model = _tiny_keras()
    paths = {"fp32": out / "tiny_fp32.tflite", "int8": out / "tiny_int8.tflite",
             "big_int8": out / "wide_int8.tflite", "mlpackage": out / "tiny.mlpackage"}
    paths["fp32"].write_bytes(_to_tflite(model, int8=False))
    paths["int8"].write_bytes(_to_tflite(model, int8=True))
    # 160x160x16 int8 activations = 400 KiB: more than an STM32F746's 320 KiB of SRAM
    paths["big_int8"].write_bytes(_to_tflite(_tiny_keras((160, 160, 3), 16), int8=True))
    func = tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec((1, 16, 16, 3), tf.float32)]).get_concrete_function()
    ct.convert([func], source="tensorflow", convert_to="mlprogram").save(str(paths["mlpackage"]))
    return paths


def test_tflite_graph_matches_the_model(artifacts: dict[str, Path]) -> None:
    graph = read_graph(artifacts["fp32"])
    assert graph.op_histogram() == {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "MEAN": 1, "SOFTMAX": 1}
    # conv 14x14x8 x 27 + depthwise 12x12x8 x 9 + dense 8x4
    assert graph.macs == 14 * 14 * 8 * 27 + 12 * 12 * 8 * 9 + 32
    conv = graph.ops[0]
    assert conv.fused_activation == "RELU" and conv.dtype == "fp32"
    # conv kernel + depthwise kernel + one zero bias the converter shares between them + dense kernel (its
    # zero bias is dropped) + MEAN's int32 axes
    assert graph.weight_bytes == 8 * 27 * 4 + 9 * 8 * 4 + 8 * 4 + 8 * 4 * 4 + 8
    int8 = read_graph(artifacts["int8"])
    assert int8.main_dtype() == "int8"
    assert int8.macs == graph.macs
    assert int8.weight_bytes < graph.weight_bytes


def test_mlpackage_graph_has_the_same_work(artifacts: dict[str, Path]) -> None:
    graph = read_graph(artifacts["mlpackage"])
    assert graph.format == "mlpackage"
    families = {op.family for op in graph.ops}
    assert {"conv", "depthwise", "matmul", "reduce", "softmax"} <= families
    assert graph.macs == 14 * 14 * 8 * 27 + 12 * 12 * 8 * 9 + 32
    assert graph.main_dtype() == "fp16"


def test_every_shipped_profile_simulates_both_formats(artifacts: dict[str, Path]) -> None:
    devices = list_devices()
    assert len(devices) >= 8
    for device in devices:
        for kind in ("fp32", "int8", "mlpackage"):
            est = simulate(artifacts[kind], device)
            assert est.p50_ms > 0, (device.name, kind)
            assert est.low_ms <= est.p50_ms <= est.high_ms
            assert est.throughput_ips == pytest.approx(1e3 / est.p50_ms)
            assert est.partitions and sum(p.op_count for p in est.partitions) == len(read_graph(artifacts[kind]).ops)
            assert est.peak_memory_bytes >= est.arena_bytes > 0
            json.dumps(est.to_dict())


def test_int8_is_faster_than_fp32_on_a_phone_cpu(artifacts: dict[str, Path]) -> None:
    device = load_device("pixel-7")
    fp32 = simulate(artifacts["fp32"], device, delegate="cpu", threads=4)
    int8 = simulate(artifacts["int8"], device, delegate="cpu", threads=4)
    assert int8.p50_ms < fp32.p50_ms
    one = simulate(artifacts["fp32"], device, delegate="cpu", threads=1)
    assert one.p50_ms > fp32.p50_ms  # more threads, less time (sublinear)


def test_coreml_compute_units_change_placement(artifacts: dict[str, Path]) -> None:
    device = load_device("iphone-15-pro")
    units = {cu: {p.kind for p in simulate(artifacts["mlpackage"], device, compute_units=cu).partitions}
             for cu in ("all", "cpu_and_gpu", "cpu_only")}
    assert units["cpu_only"] == {"cpu"}
    assert "ane" not in units["cpu_and_gpu"]
    assert not simulate(artifacts["mlpackage"], device).warnings
    android = simulate(artifacts["mlpackage"], load_device("pixel-8"))
    assert any("does not run coreml" in w for w in android.warnings)


def test_microcontroller_rejects_too_large_activations(artifacts: dict[str, Path]) -> None:
    stm32 = load_device("stm32f746")
    small = simulate(artifacts["int8"], stm32)
    assert small.budget.ok
    big = simulate(artifacts["big_int8"], stm32)
    assert not big.budget.ok
    assert big.arena_bytes > stm32.ram_bytes
    assert any("RAM" in m for m in big.budget.messages)


def test_cli_simulate_json_and_budget_exit_code(artifacts: dict[str, Path], run_cli: Callable[..., Any]) -> None:
    result = run_cli("simulate", artifacts["int8"], "--device", "pixel-7", "--device", "stm32f746", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert [e["device"] for e in report["estimates"]] == ["pixel-7", "stm32f746"]
    assert report["estimates"][0]["p50_ms"] > 0
    over = run_cli("simulate", artifacts["big_int8"], "--device", "stm32f746", "--check-budgets")
    assert over.code == 6
    assert "budget exceeded" in over.err and "Traceback" not in over.err
    text = run_cli("simulate", artifacts["fp32"], "--device", "pixel-7", "--threads", "4")
    assert text.code == 0 and "ms p50" in text.out and "top ops" in text.out


def test_cli_simulate_bad_artifact_is_exit_3(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40)
    result = run_cli("simulate", bad, "--device", "pixel-7")
    assert result.code == 3
    assert result.err.startswith("error:") and "Traceback" not in result.err
    assert run_cli("simulate", tmp_path / "missing.tflite").code == 3


def test_simulate_tflite_does_not_import_tensorflow(artifacts: dict[str, Path]) -> None:
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from pathlib import Path\n"
        "from edgeexport.catalog import load_device\n"
        "from edgeexport.simulate import simulate\n"
        f"e = simulate(Path({str(artifacts['int8'])!r}), load_device('pixel-7'))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'coremltools', 'keras'))\n"
        "print(len(heavy), round(time.perf_counter() - t, 3), e.p50_ms > 0)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    heavy, seconds, ok = out.stdout.split()
    assert heavy == "0" and ok == "True"
    assert float(seconds) < 2.0


def test_delegate_paths_and_fallback(artifacts: dict[str, Path]) -> None:
    # iOS names LiteRT's GPU delegate "metal"; the path exists and runs the float model on the GPU in fp16
    gpu = simulate(artifacts["fp32"], load_device("iphone-xs"), delegate="gpu")
    assert gpu.path == "gpu" and {op.dtype for op in gpu.top_ops if op.unit == "gpu"} <= {"fp16"}
    # an int8-only DSP cannot take a float model: every op falls back to the CPU
    dsp = simulate(artifacts["fp32"], load_device("pixel-4"), delegate="npu")
    assert {p.kind for p in dsp.partitions} == {"cpu"}
    on_dsp = simulate(artifacts["int8"], load_device("pixel-4"), delegate="npu")
    assert "dsp" in {p.kind for p in on_dsp.partitions}
    assert all(p.boundary_ms > 0 for p in on_dsp.partitions if p.kind == "dsp")
