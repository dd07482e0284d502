"""Op costs, the roofline, thread scaling, the arena planner and budgets against hand-computed values.

No TensorFlow here: graphs are built from ``Tensor``/``Op`` objects and profiles directly in code.
"""

from __future__ import annotations

import math

import pytest

from edgeexport.catalog.model import ComputeUnit, DeviceProfile
from edgeexport.simulate.cost import (
    MemoryModel,
    cpu_speedup,
    effective_threads,
    op_time,
)
from edgeexport.simulate.estimate import budget_status
from edgeexport.simulate.graph import Op, OpGraph, Tensor
from edgeexport.simulate.memory import Buffer, lifetimes, plan_arena
from edgeexport.simulate.ops import mil_family, tflite_family, work_of
from edgeexport.simulate.tflite_reader import _make_op, compute_dtype


def _t(i: int, shape: tuple[int, ...], dtype: str = "float32", constant: bool = False) -> Tensor:
    n = math.prod(shape)
    size = {"float32": 4, "float16": 2, "int8": 1, "int32": 4}[dtype]
    return Tensor(i, f"t{i}", shape, dtype, constant, n * size)


def _cpu(**kw: object) -> ComputeUnit:
    base: dict[str, object] = dict(
        name="cpu", kind="cpu", cores=4, clock_ghz=2.0, peak_gops={"fp32": 100.0, "int8": 400.0},
        memory_bandwidth_gbps=10.0, op_overhead_us=2.0, dtypes=frozenset({"fp32", "int8"}),
        op_families=frozenset(), efficiency={"default": 0.5, "conv": 0.5, "depthwise": 0.25},
    )
    base.update(kw)
    return ComputeUnit(**base)  # type: ignore[arg-type]


def test_conv_macs_match_hand_count() -> None:
    # 3x3 conv, 16 -> 32 channels, 28x28 output: 28*28*32 outputs x 3*3*16 MACs each
    x, w, y = _t(0, (1, 28, 28, 16)), _t(1, (32, 3, 3, 16), constant=True), _t(2, (1, 28, 28, 32))
    macs, ops = work_of("conv", "CONV_2D", [x], [w], [y])
    assert macs == 28 * 28 * 32 * 9 * 16 == 3_612_672
    assert ops == 2 * macs


def test_depthwise_conv_bytes_and_macs() -> None:
    # 3x3 depthwise on 1x14x14x32 fp32 with bias: reads 25088 + weights 1152 + bias 128, writes 25088
    tensors = [_t(0, (1, 14, 14, 32)), _t(1, (1, 3, 3, 32), constant=True), _t(2, (32,), constant=True),
               _t(3, (1, 14, 14, 32))]
    op = _make_op(0, "DEPTHWISE_CONV_2D", (0, 1, 2), (3,), tensors, None)
    assert op.family == "depthwise"
    assert op.macs == 14 * 14 * 32 * 9
    assert (op.read_bytes, op.weight_bytes, op.write_bytes) == (25088, 1152 + 128, 25088)
    assert op.bytes_moved == 51456


def test_mil_conv_layouts() -> None:
    # MIL weights are [Cout, Cin/groups, Kh, Kw]; a conv with groups == Cin is depthwise
    x, w, y = _t(0, (1, 8, 14, 14)), _t(1, (8, 1, 3, 3), constant=True), _t(2, (1, 8, 12, 12))
    assert mil_family("conv", groups=8, in_channels=8) == "depthwise"
    assert mil_family("conv", groups=1, in_channels=8) == "conv"
    assert work_of("depthwise", "conv", [x], [w], [y], layout="mil")[0] == 12 * 12 * 8 * 9


def test_fc_and_batch_matmul_macs() -> None:
    x, w, y = _t(0, (1, 256)), _t(1, (10, 256), constant=True), _t(2, (1, 10))
    assert work_of("fc", "FULLY_CONNECTED", [x], [w], [y])[0] == 2560
    a, b, c = _t(0, (2, 16, 64)), _t(1, (2, 64, 32)), _t(2, (2, 16, 32))
    assert work_of("matmul", "BATCH_MATMUL", [a, b], [], [c])[0] == 2 * 16 * 32 * 64


def test_family_mapping() -> None:
    assert tflite_family("CONV_2D") == "conv"
    assert tflite_family("MEAN") == "reduce"
    assert tflite_family("HARD_SWISH") == "activation"
    assert tflite_family("CUSTOM:Foo") == "other"
    assert compute_dtype(["int8"], ["int8", "int32"]) == "int8"
    assert compute_dtype(["float32"], ["int8"]) == "int8"  # dynamic-range quantization
    assert compute_dtype(["float32"], ["float32"]) == "fp32"


def test_roofline_compute_and_memory_bound() -> None:
    unit = _cpu()
    compute_op = Op(0, "c", "CONV_2D", "conv", (), (), "fp32", macs=1_000_000, ops=2_000_000,
                    weight_bytes=1000, read_bytes=1000, write_bytes=1000)
    t = op_time(compute_op, unit, threads=1)
    # one of 4 threads: 100 GOP/s x speedup(1) / speedup(4) = 100 x 0.34 = 34 GOP/s x 0.5 efficiency
    # -> 2e6 / 17e9 = 117.6 us; + 2 us overhead
    assert t.bound == "compute"
    assert t.seconds == pytest.approx(2e6 / (100e9 * 0.34 * 0.5) + 2e-6, rel=1e-9)
    memory_op = Op(1, "a", "ADD", "elementwise", (), (), "fp32", ops=1000, read_bytes=800_000, write_bytes=400_000)
    dram = MemoryModel(cache_bytes=1_000_000)  # 1.2 MB of activations do not fit: they go to DRAM
    t = op_time(memory_op, unit, threads=1, memory=dram)
    assert t.bound == "memory"
    assert t.seconds == pytest.approx(1.2e6 / 10e9 + 2e-6, rel=1e-9)  # 120 us + 2 us
    cached = op_time(memory_op, unit, threads=1, memory=MemoryModel(cache_bytes=2_000_000))
    assert cached.bound == "compute" and cached.memory_s == 0.0


def test_weights_stream_from_dram_unless_the_model_fits_in_cache() -> None:
    unit = _cpu()
    fc = Op(0, "fc", "FULLY_CONNECTED", "fc", (), (), "fp32", macs=4_000_000, ops=8_000_000,
            weight_bytes=16_000_000, read_bytes=4000, write_bytes=4000)
    streamed = op_time(fc, unit, threads=1, memory=MemoryModel(cache_bytes=2**20, weights_resident=False))
    assert streamed.bound == "memory" and streamed.memory_s == pytest.approx(16e6 / 10e9)
    resident = op_time(fc, unit, threads=1, memory=MemoryModel(cache_bytes=2**25, weights_resident=True))
    assert resident.bound == "compute" and resident.seconds < streamed.seconds


def test_thread_scaling_is_sublinear_and_capped() -> None:
    assert cpu_speedup(1) == 1.0
    assert 2.8 < cpu_speedup(4) < 3.1  # Amdahl with s = 0.12 (2.93x measured on a Pi 4)
    unit = _cpu()
    assert effective_threads(unit, 16) == 4
    assert effective_threads(unit, None) == 4
    op = Op(0, "c", "CONV_2D", "conv", (), (), "fp32", macs=10**8, ops=2 * 10**8)
    one, four = op_time(op, unit, threads=1).seconds, op_time(op, unit, threads=4).seconds
    assert 2.5 < one / four < 3.1


def test_greedy_arena_peak_of_a_small_graph() -> None:
    # t0 (input, 1000 B) -> op0 -> t1 (2000 B) -> op1 -> t2 (500 B); op2(t0, t2) -> t3 (100 B, output)
    tensors = (_t(0, (250,)), _t(1, (500,)), _t(2, (125,)), _t(3, (25,)))
    ops = (
        Op(0, "op0", "RELU", "activation", (0,), (1,), "fp32"),
        Op(1, "op1", "RELU", "activation", (1,), (2,), "fp32"),
        Op(2, "op2", "ADD", "elementwise", (0, 2), (3,), "fp32"),
    )
    graph = OpGraph("tflite", None, tensors, ops, (0,), (3,), 0, 0, 0.0)
    bufs = {b.tensor: b for b in lifetimes(graph)}
    assert (bufs[0].first, bufs[0].last) == (-1, 2)
    assert (bufs[3].first, bufs[3].last) == (2, 3)
    plan = plan_arena(list(bufs.values()))
    # 64-byte aligned: t1 2048 @0, t0 1024 @2048, t2 512 @3072, t3 128 reuses @0 (t1 is dead by op2)
    assert dict(plan.offsets) == {1: 0, 0: 2048, 2: 3072, 3: 0}
    assert plan.peak_bytes == 3584
    assert plan.naive_bytes == 3712


def test_arena_reuses_memory_across_a_chain() -> None:
    chain = [Buffer(i, 1024, i - 1, i) for i in range(10)]  # each lives for two consecutive ops
    assert plan_arena(chain).peak_bytes == 2 * 1024


def _mcu_device() -> DeviceProfile:
    unit = ComputeUnit(name="mcu", kind="mcu", cores=1, clock_ghz=0.216, peak_gops={"int8": 0.26},
                       memory_bandwidth_gbps=0.8, op_overhead_us=20.0, dtypes=frozenset({"int8"}),
                       op_families=frozenset(), efficiency={"default": 0.3})
    return DeviceProfile(name="tiny-mcu", display_name="MCU", device_class="mcu", units=(unit,),
                         ram_bytes=320 * 1024, flash_bytes=1024 * 1024, os="none", os_version="-",
                         targets=frozenset({"tflite"}))


def test_microcontroller_rejects_a_model_too_large_for_its_ram() -> None:
    graph = OpGraph("tflite", None, (), (), (), (), size_bytes=200_000, weight_bytes=190_000, sparsity=0.0)
    fits = budget_status(graph, _mcu_device(), arena_bytes=100 * 1024)
    assert fits.ok and fits.ram_needed_bytes == 100 * 1024  # weights stay in flash on an MCU
    over = budget_status(graph, _mcu_device(), arena_bytes=1024 * 1024)
    assert not over.ok
    assert "RAM" in over.messages[0]
    too_big = OpGraph("tflite", None, (), (), (), (), size_bytes=3 * 2**20, weight_bytes=3 * 2**20, sparsity=0.0)
    flash = budget_status(too_big, _mcu_device(), arena_bytes=1024)
    assert not flash.ok and "flash" in flash.messages[0]
