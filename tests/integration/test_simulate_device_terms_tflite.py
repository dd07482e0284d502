"""The issue-12 device cost terms on a real small .tflite (a Keras residual block converted by LiteRT): each
term moves the estimate in the direction its physics says."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edgeexport.catalog import load_device
from edgeexport.simulate import read_graph
from edgeexport.simulate.cost import op_time
from edgeexport.simulate.estimate import memory_model
from edgeexport.simulate.fit import with_unit
from edgeexport.simulate.graph import OpGraph
from edgeexport.simulate.placement import place


def _residual_keras() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Conv2D(16, 3, padding="same")(x)
    z = keras.layers.Add()([x, y])  # a runtime ADD right after the conv that produced one of its inputs
    z = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(z)
    z = keras.layers.Conv2D(32, 3, strides=2, padding="same")(z)
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(z))
    return keras.Model(inputs, out)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OpGraph]:
    from edgeexport.simulate.microbench import keras_to_tflite

    out = tmp_path_factory.mktemp("terms")
    model = _residual_keras()
    found = {}
    for preset in ("fp32", "int8"):
        path: Path = out / f"residual_{preset}.tflite"
        path.write_bytes(keras_to_tflite(model, preset))
        found[preset] = read_graph(path)
    assert "ADD" in found["int8"].op_histogram() and found["int8"].op_histogram().get("CONV_2D") == 4
    return found


def _ms(graph: OpGraph, device: Any, path: str) -> float:
    return place(graph, device, path, memory=memory_model(graph, device)).total_ms


def test_gpu_occupancy_slows_a_small_graph(graphs: dict[str, OpGraph]) -> None:
    device = load_device("pixel-3")
    gpu = device.unit("gpu")
    free = with_unit(device, replace(gpu, occupancy_elements=None))
    starved = with_unit(device, replace(gpu, occupancy_elements=1e6))  # 32x32x16 outputs: 1.6 % of the lanes
    assert _ms(graphs["fp32"], starved, "gpu") > _ms(graphs["fp32"], free, "gpu")


def test_gpu_links_the_add_into_the_previous_kernel(graphs: dict[str, OpGraph]) -> None:
    device = load_device("pixel-3")
    graph = graphs["fp32"]
    placed = place(graph, device, "gpu", memory=memory_model(graph, device))
    i = next(k for k, op in enumerate(graph.ops) if op.op_type == "ADD")
    assert placed.units[i] == "gpu" and placed.units[i - 1] == "gpu"
    unlinked = op_time(graph.ops[i], device.unit("gpu"), dtype="fp16", memory=memory_model(graph, device))
    assert placed.times[i].overhead_s == 0.0 and unlinked.overhead_s > 0.0
    assert placed.times[i].seconds < unlinked.seconds


def test_edge_tpu_hands_everything_after_its_first_unsupported_op_to_the_cpu(graphs: dict[str, OpGraph]) -> None:
    device = load_device("coral-dev-board")
    tpu = replace(device.unit("tpu"), op_families=device.unit("tpu").op_families - {"elementwise"})
    no_add = with_unit(device, tpu)
    graph = graphs["int8"]
    placed = place(graph, no_add, "npu", memory=memory_model(graph, no_add))
    i = next(k for k, op in enumerate(graph.ops) if op.op_type == "ADD")
    assert "tpu" in placed.units[:i]
    assert set(placed.units[i:]) == {"cpu"}  # the two convs after the ADD too
    # the same unit partitioning freely (an NPU) would run those convs on the accelerator, faster
    free = with_unit(device, replace(tpu, kind="npu"))
    assert _ms(graph, no_add, "npu") > _ms(graph, free, "npu")


def test_edge_tpu_streams_weights_that_overflow_its_sram(graphs: dict[str, OpGraph]) -> None:
    device = load_device("coral-dev-board")
    graph = graphs["int8"]
    tpu = device.unit("tpu")
    fits = with_unit(device, replace(tpu, on_chip_bytes=10**7))
    spills = with_unit(device, replace(tpu, on_chip_bytes=1000))  # the model's ~14 KB of weights stream
    faster_link = with_unit(device, replace(tpu, on_chip_bytes=1000, memory_bandwidth_gbps=tpu.memory_bandwidth_gbps * 10))
    assert _ms(graph, spills, "npu") > _ms(graph, faster_link, "npu") > _ms(graph, fits, "npu") * 0.999
