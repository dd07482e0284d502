"""Where the precision search places candidates (issue 13): an NNAPI TPU partitions around a float op (an Edge TPU
stops at it), the delegate partitioner keeps supported ops on the unit, and which devices rank on the npu path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgeexport.catalog import load_preset
from edgeexport.catalog.devices import load_device
from edgeexport.search.latency import deployment
from edgeexport.simulate.graph import OpGraph
from edgeexport.simulate.placement import place
from edgeexport.simulate.preset_choice import reference_graph, retyped


def _int8_with_float_middle() -> tuple[OpGraph, int]:
    graph = retyped(reference_graph(), "int8", "tflite")
    middle = len(graph.ops) // 2
    ops = tuple(replace(op, dtype="fp32") if op.index == middle else op for op in graph.ops)
    return replace(graph, ops=ops), middle


def test_an_nnapi_tpu_runs_both_sides_of_a_float_op_and_an_edge_tpu_only_the_prefix() -> None:
    graph, middle = _int8_with_float_middle()
    pixel = place(graph, load_device("pixel-8"), "npu", partitioner="delegate")
    assert pixel.units[middle] == "cpu" and pixel.units[middle - 1] == "tpu" and pixel.units[middle + 1] == "tpu"
    assert [p.kind for p in pixel.partitions if p.kind == "tpu"] == ["tpu", "tpu"]
    assert pixel.boundary_ms > 0.3  # four crossings at 80 us synchronisation each, plus the copies
    coral = place(graph, load_device("coral-dev-board"), "npu", partitioner="delegate")
    assert set(coral.units[middle:]) == {"cpu"} and coral.units[middle - 1] == "tpu"


def test_the_cost_partitioner_may_hand_partitions_back_and_the_delegate_one_does_not() -> None:
    graph, _ = _int8_with_float_middle()
    device = load_device("pixel-8")
    cost, kept = place(graph, device, "npu"), place(graph, device, "npu", partitioner="delegate")
    assert kept.units.count("tpu") == len(graph.ops) - 1 - sum(op.family == "elementwise" for op in graph.ops
                                                                if op.dtype == "fp32")
    assert cost.total_ms <= kept.total_ms
    with pytest.raises(ValueError, match="unknown partitioner"):
        place(graph, device, "npu", partitioner="fastest")


def test_which_devices_rank_int8_candidates_on_their_npu() -> None:
    int8 = load_preset("int8")
    assert deployment(load_device("pixel-8"), "tflite", int8).path == "npu"
    assert deployment(load_device("galaxy-s24"), "tflite", int8).partitioner == "delegate"
    assert deployment(load_device("raspberry-pi-5"), "tflite", int8).path == "auto"
    assert deployment(load_device("pixel-8"), "tflite", int8, auto=True).path == "auto"  # as preset_choice ranked
    assert deployment(load_device("pixel-8"), "tflite", load_preset("fp16")).path == "auto"  # TPU is int8-only
    assert deployment(load_device("iphone-15-pro"), "coreml", load_preset("w8a8")).path == "auto"
