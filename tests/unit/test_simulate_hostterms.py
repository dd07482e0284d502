"""The calibrated host's cost terms (simulate.hostterms): each recovered from synthetic suite rows built with
known parameters, and the op time they give. No TensorFlow here."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from edgeexport.catalog.model import ComputeUnit
from edgeexport.simulate.calibrate import Measurement, fit_thread_scaling
from edgeexport.simulate.cost import MemoryModel, op_time
from edgeexport.simulate.graph import Op
from edgeexport.simulate.hostterms import (
    HostTerms,
    bandwidth_scaling,
    cache_bandwidth,
    from_residuals,
    handoff_us,
    single_thread_kernels,
    weight_seconds,
)

INVOKE_US, OVERHEAD_US = 1.0, 0.1


def _m(case: str, family: str, us: float, *, threads: int = 1, dtype: str = "fp32", ops: int = 10**6,
       nbytes: int = 0, op_count: int = 1, op_type: str = "CONV_2D") -> Measurement:
    return Measurement(case, family, dtype, us * 1e-3, ops, nbytes, op_count, op_type, threads)


def _cpu(**kw: object) -> ComputeUnit:
    base: dict[str, object] = {
        "name": "cpu", "kind": "cpu", "cores": 2, "clock_ghz": 3.0, "peak_gops": {"fp32": 200.0, "int8": 800.0},
        "memory_bandwidth_gbps": 20.0, "op_overhead_us": 0.1, "dtypes": frozenset({"fp32", "int8"}),
        "op_families": frozenset(), "efficiency": {"default": 0.5}, "serial_fraction": 0.1, "thread_sync_us": 2.0,
    }
    base.update(kw)
    return ComputeUnit(**base)  # type: ignore[arg-type]


def test_shared_cache_bandwidth_is_recovered_from_the_gemv_cases() -> None:
    # 4 MB and 6 MB read at 80 GB/s: 50 and 75 us plus invoke and one op's overhead
    rows = [_m(f"dense-{mb}", "cache", INVOKE_US + OVERHEAD_US + mb * 1e6 / 80e3, nbytes=mb * 10**6) for mb in (4, 6)]
    assert cache_bandwidth(rows, 1, INVOKE_US, OVERHEAD_US, {}) == pytest.approx(80.0, rel=1e-6)
    assert cache_bandwidth([], 1, INVOKE_US, OVERHEAD_US, {}) is None


def test_bandwidth_scaling_is_the_time_ratio_capped_at_the_thread_count() -> None:
    rows = [_m("s", "stream", 2000.0), _m("s", "stream", 2000.0 / 1.6, threads=2)]
    assert bandwidth_scaling(rows, 1) == ((2, 1.6),)
    noisy = [_m("s", "stream", 2000.0), _m("s", "stream", 2000.0 / 2.7, threads=2)]
    assert bandwidth_scaling(noisy, 1) == ((2, 2.0),)


def test_kernels_that_never_speed_up_are_single_threaded() -> None:
    rows = [_m("pool", "pool", 220.0, dtype="int8", op_type="AVERAGE_POOL_2D"),
            _m("pool", "pool", 225.0, threads=2, dtype="int8", op_type="AVERAGE_POOL_2D"),
            _m("c1", "conv", 130.0), _m("c1", "conv", 72.0, threads=2),
            _m("c2", "conv", 30.0), _m("c2", "conv", 29.0, threads=2),  # one slow block is not a kernel
            _m("tiny", "elementwise", 3.0, op_type="ADD"), _m("tiny", "elementwise", 3.0, threads=2, op_type="ADD")]
    assert single_thread_kernels(rows, 1, INVOKE_US) == frozenset({"AVERAGE_POOL_2D@int8"})


def test_handoff_per_op_is_recovered_from_the_conv_chains() -> None:
    s, sync, per_conv = 0.1, 1.5, 2.0  # known: serial fraction, hand-off (us), one conv's work (us)
    a = s + (1 - s) / 2
    rows = []
    for n in (1, 16):
        rows.append(_m(f"chain-{n}", "handoff", INVOKE_US + n * per_conv, op_count=n))
        rows.append(_m(f"chain-{n}", "handoff", INVOKE_US + n * (a * per_conv + sync), threads=2, op_count=n))
    assert handoff_us(rows, 1, s) == pytest.approx(sync, rel=1e-9)
    assert handoff_us(rows[:2], 1, s) is None


def test_serial_fraction_fit_ignores_single_thread_kernels() -> None:
    s = 0.2
    a = s + (1 - s) / 2
    rows = []
    for i, us in enumerate((40.0, 80.0, 130.0, 200.0, 300.0)):
        rows += [_m(f"c{i}", "conv", INVOKE_US + OVERHEAD_US + us),
                 _m(f"c{i}", "conv", INVOKE_US + OVERHEAD_US + a * us, threads=2)]
    rows += [_m("p", "pool", 220.0, dtype="int8", op_type="AVERAGE_POOL_2D"),
             _m("p", "pool", 221.0, threads=2, dtype="int8", op_type="AVERAGE_POOL_2D")]
    serial, sync = fit_thread_scaling(rows, 1, INVOKE_US, OVERHEAD_US)
    assert serial == pytest.approx(s, abs=1e-6) and sync == pytest.approx(0.0, abs=1e-6)


def _conv(ops: int, weight_bytes: int, op_type: str = "CONV_2D", dtype: str = "fp32") -> Op:
    return Op(0, "op", op_type, "conv", (0,), (1,), dtype, macs=ops // 2, ops=ops, weight_bytes=weight_bytes,
              read_bytes=1000, write_bytes=1000)


TERMS = HostTerms(private_cache_bytes=2**20, cache_bandwidth_gbps=80.0, bandwidth_scaling=((2, 1.5),),
                  cache_scaling=((2, 1.8),), split_min_ops=4096, single_thread_ops=frozenset({"TILE@fp32"}))


def test_weights_beyond_the_private_cache_add_their_read_time() -> None:
    unit = _cpu()
    op = _conv(10**8, 4 * 10**6)  # each of 1 M weights used 50 times: a GEMM with several row tiles
    plain = op_time(op, unit, threads=1, memory=MemoryModel(weights_resident=True, host=TERMS))
    half = op_time(op, unit, threads=1, memory=MemoryModel(weights_resident=False, weight_stream_share=0.5, host=TERMS))
    expected = 2e6 / 80e9 + 2e6 / 20e9
    assert half.seconds - plain.seconds == pytest.approx(expected, rel=1e-9)
    # a GEMV (each weight used once) reads as it multiplies: the slower of the two, not their sum
    gemv = Op(0, "fc", "FULLY_CONNECTED", "fc", (0,), (1,), "fp32", macs=10**6, ops=2 * 10**6,
              weight_bytes=4 * 10**6, read_bytes=4000, write_bytes=4000)
    t = op_time(gemv, unit, threads=1, memory=MemoryModel(weights_resident=False, weight_stream_share=0.5, host=TERMS))
    assert t.seconds == pytest.approx(max(t.compute_s, t.memory_s) + t.overhead_s, rel=1e-9)
    assert t.memory_s == pytest.approx(expected, rel=1e-9)
    assert weight_seconds(4e6, 0.5, TERMS, 20.0, 2) == pytest.approx(2e6 / (80e9 * 1.8) + 2e6 / (20e9 * 1.5))


def test_unsplit_ops_get_one_thread_and_no_handoff() -> None:
    unit = _cpu()
    mem = MemoryModel(weights_resident=True, host=TERMS)
    big, tiny, tile = _conv(10**8, 0), _conv(1000, 0), _conv(10**8, 0, op_type="TILE")
    one, two = op_time(big, unit, threads=1, memory=mem), op_time(big, unit, threads=2, memory=mem)
    a = 0.1 + 0.9 / 2
    assert two.compute_s == pytest.approx(one.compute_s * a, rel=1e-9)
    assert two.overhead_s - one.overhead_s == pytest.approx(2e-6)
    for op in (tiny, tile):
        assert op_time(op, unit, threads=2, memory=mem).seconds == pytest.approx(
            op_time(op, unit, threads=1, memory=mem).seconds, rel=1e-9)


def test_host_terms_round_trip_and_old_residuals_keep_the_roofline() -> None:
    assert from_residuals({"host_terms": TERMS.to_json()}) == TERMS
    assert from_residuals({"ratio_p10": 0.8}) is None and from_residuals(None) is None
    unit = _cpu()
    op = _conv(10**7, 4 * 10**6)
    old = op_time(op, unit, threads=1, memory=MemoryModel(weights_resident=False))
    assert old.seconds == pytest.approx(max(old.compute_s, old.memory_s) + old.overhead_s)
    assert math.isclose(op_time(op, replace(unit), threads=1, memory=MemoryModel()).seconds, old.seconds)


def test_a_host_calibrated_without_host_terms_says_to_recalibrate(tmp_path: Path) -> None:
    import json
    import shutil

    from edgeexport.catalog.devices import DEVICE_DIR, parse_device
    from edgeexport.simulate import simulate
    from edgeexport.simulate.graph import OpGraph, Tensor

    text = (DEVICE_DIR / "host.toml").read_text(encoding="utf-8").replace("placeholder until edgeexport calibrate",
                                                                          "M: a calibration")
    (tmp_path / "host.toml").write_text(text, encoding="utf-8")
    tensors = (Tensor(0, "x", (1, 8), "float32", False, 32), Tensor(1, "y", (1, 8), "float32", False, 32))
    graph = OpGraph("tflite", None, tensors, (Op(0, "relu", "RELU", "activation", (0,), (1,), "fp32", ops=8),),
                    (0,), (1,), 64, 0, 0.0)
    (tmp_path / "host.residuals.json").write_text(json.dumps({"ratio_p10": 0.8, "ratio_p90": 1.2, "n": 3}))
    old = simulate(Path("m.tflite"), parse_device(tmp_path / "host.toml"), graph=graph, threads=1)
    assert any("re-run `edgeexport calibrate`" in w for w in old.warnings)
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    shutil.copy(tmp_path / "host.toml", new_dir / "host.toml")
    (new_dir / "host.residuals.json").write_text(json.dumps({"ratio_p10": 0.8, "ratio_p90": 1.2, "n": 3,
                                                             "host_terms": TERMS.to_json()}))
    new = simulate(Path("m.tflite"), parse_device(new_dir / "host.toml"), graph=graph, threads=1)
    assert not any("re-run `edgeexport calibrate`" in w for w in new.warnings)
