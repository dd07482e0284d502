"""What an estimate does not know: extrapolation outside a profile's evidence, uncosted ops, the host
placeholder, and the thread-scaling fit (issue 12, items 5 and 6). No TensorFlow here."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from edgeexport.catalog.devices import parse_device
from edgeexport.catalog.model import ComputeUnit, DeviceProfile, Evidence
from edgeexport.errors import ProfileError
from edgeexport.simulate.bench import default_threads
from edgeexport.simulate.calibrate import Measurement, fit, fit_thread_scaling, profile_toml
from edgeexport.simulate.cost import cpu_speedup, effective_threads, op_time
from edgeexport.simulate.estimate import PLACEHOLDER_BAND, simulate, uncertainty_band
from edgeexport.simulate.evidence import EXTRAPOLATION_SHARE, coverage
from edgeexport.simulate.graph import Op, OpGraph, Tensor

FACTS: dict[str, object] = {"cores": 2, "ghz": 2.5, "model": "Test CPU", "flop_cycle": 32, "vnni": True}


def _unit(**kw: object) -> ComputeUnit:
    base: dict[str, object] = {
        "name": "cpu", "kind": "cpu", "cores": 2, "clock_ghz": 2.5, "peak_gops": {"fp32": 100.0, "int8": 300.0},
        "memory_bandwidth_gbps": 10.0, "op_overhead_us": 1.0, "dtypes": frozenset({"fp32", "int8"}),
        "op_families": frozenset(), "efficiency": {"default": 0.5},
    }
    base.update(kw)
    return ComputeUnit(**base)  # type: ignore[arg-type]


def _device(evidence: Evidence | None, **sources: str) -> DeviceProfile:
    return DeviceProfile(name="cnn-phone", display_name="test", device_class="phone", units=(_unit(),),
                         ram_bytes=2**30, flash_bytes=None, os="android", os_version="14",
                         targets=frozenset({"tflite"}), sources=sources, evidence=evidence)


def _graph(ops: list[tuple[str, str, str, int]]) -> OpGraph:
    """A chain of ops given as (op_type, family, dtype, ops)."""
    tensors = tuple(Tensor(i, f"t{i}", (1, 64), "int8", False, 64) for i in range(len(ops) + 1))
    built = tuple(Op(i, f"op{i}", t, f, (i,), (i + 1,), d, macs=n // 2 if f in ("conv", "matmul") else 0, ops=n,
                     read_bytes=64, write_bytes=64) for i, (t, f, d, n) in enumerate(ops))
    return OpGraph("tflite", None, tensors, built, (0,), (len(ops),), 1000, 0, 0.0)


CNN_EVIDENCE = Evidence(frozenset({"conv@int8", "depthwise@int8", "elementwise@int8", "pool@int8"}),
                        "fitted on 12 CNN rows")
ATTENTION = [("BATCH_MATMUL", "matmul", "int8", 4_000_000), ("SOFTMAX", "softmax", "int8", 800_000),
             ("CONV_2D", "conv", "int8", 2_000_000)]


def test_int8_attention_on_a_cnn_profile_is_extrapolated_with_a_wider_band() -> None:
    device = _device(CNN_EVIDENCE)
    est = simulate(Path("attention.tflite"), device, graph=_graph(ATTENTION), threads=1)
    assert est.extrapolated
    assert "matmul@int8" in est.extrapolation and "softmax@int8" in est.extrapolation
    assert "fitted on 12 CNN rows" in est.extrapolation
    assert any(w == est.extrapolation for w in est.warnings)
    plain = simulate(Path("attention.tflite"), _device(None), graph=_graph(ATTENTION), threads=1)
    assert not plain.extrapolated and plain.p50_ms == pytest.approx(est.p50_ms)
    assert est.high_ms / est.p50_ms > plain.high_ms / plain.p50_ms
    assert est.low_ms / est.p50_ms < plain.low_ms / plain.p50_ms
    assert "widened for extrapolation" in est.band_source


def test_a_cnn_inside_the_evidence_is_not_extrapolated() -> None:
    cnn = [("CONV_2D", "conv", "int8", 4_000_000), ("DEPTHWISE_CONV_2D", "depthwise", "int8", 500_000),
           ("RESHAPE", "reshape", "int8", 0), ("ADD", "elementwise", "int8", 64)]
    est = simulate(Path("cnn.tflite"), _device(CNN_EVIDENCE), graph=_graph(cnn), threads=1)
    assert not est.extrapolated and est.extrapolation == ""
    # the same graph in fp32 is outside an int8-only evidence
    fp32 = [(t, f, "fp32", n) for t, f, _, n in cnn]
    assert simulate(Path("cnn.tflite"), _device(CNN_EVIDENCE), graph=_graph(fp32), threads=1).extrapolated


def test_small_uncovered_shares_stay_inside_the_band() -> None:
    ops = [Op(0, "a", "CONV_2D", "conv", (), (), "int8", ops=100), Op(1, "b", "SOFTMAX", "softmax", (), (), "int8", ops=1)]
    share = 0.9 * EXTRAPOLATION_SHARE
    known = coverage(_device(CNN_EVIDENCE), ops, [1.0 - share, share], ["int8", "int8"])
    assert not known.extrapolated and known.uncovered == (("softmax@int8", pytest.approx(share)),)
    known = coverage(_device(CNN_EVIDENCE), ops, [0.5, 0.5], ["int8", "int8"])
    assert known.extrapolated and known.share == pytest.approx(0.5)


def test_ops_without_a_work_model_are_listed_not_priced_silently() -> None:
    ops = [("CONV_2D", "conv", "int8", 2_000_000), ("CUSTOM:TFLite_Detection_PostProcess", "other", "int8", 64),
           ("CUSTOM:TFLite_Detection_PostProcess", "other", "int8", 64), ("WHERE", "other", "int8", 64)]
    est = simulate(Path("det.tflite"), _device(None), graph=_graph(ops), threads=1)
    assert est.uncosted_ops == ("CUSTOM:TFLite_Detection_PostProcess x2", "WHERE")
    assert any(w.startswith("3 ops not costed: CUSTOM:TFLite_Detection_PostProcess x2, WHERE") for w in est.warnings)
    clean = simulate(Path("cnn.tflite"), _device(None), graph=_graph(ops[:1]), threads=1)
    assert clean.uncosted_ops == () and not any("not costed" in w for w in clean.warnings)


def test_the_uncalibrated_host_placeholder_says_so() -> None:
    from edgeexport.catalog.devices import DEVICE_DIR, load_device

    host = load_device(DEVICE_DIR / "host.toml")
    low, high, source = uncertainty_band(host)
    assert (low, high) == PLACEHOLDER_BAND and "placeholder" in source
    est = simulate(Path("cnn.tflite"), host, graph=_graph(ATTENTION[2:]), threads=1)
    assert any("uncalibrated placeholder" in w for w in est.warnings)
    assert est.high_ms == pytest.approx(est.p50_ms * PLACEHOLDER_BAND[1])


def test_evidence_round_trips_through_the_profile_toml(tmp_path: Path) -> None:
    unit = _unit(efficiency={"default": 0.4, "conv": 0.8}, serial_fraction=0.3, thread_sync_us=2.5,
                 peak_gops={"fp32": 100.0, "fp16": 100.0, "int8": 300.0})
    path = tmp_path / "my-host.toml"
    path.write_text(profile_toml("my-host", unit, FACTS, 1, 10, covered=["conv@fp32", "matmul@int8"]), encoding="utf-8")
    profile = parse_device(path)
    assert profile.evidence is not None and profile.evidence.covered == {"conv@fp32", "matmul@int8"}
    assert profile.evidence.basis.startswith("M: edgeexport calibrate")
    cpu = profile.unit("cpu")
    assert cpu is not None and cpu.serial_fraction == 0.3 and cpu.thread_sync_us == 2.5
    bad = path.read_text(encoding="utf-8").replace('"matmul@int8"', '"matmull@int8"')
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(ProfileError, match="evidence.covered"):
        parse_device(path)


def _scaling_rows(serial: float, sync_us: float, threads: int) -> list[Measurement]:
    """Cases from a known truth: 1-thread compute c (us), T threads c x (s + (1 - s) / T) + sync per op,
    0.5 us per op and 3 us per invoke on both sides."""
    rows = []
    for k, c in enumerate((0.5, 2.0, 8.0, 30.0, 120.0, 400.0)):
        for n_ops in (1, 2):
            name = f"case{k}-{n_ops}"
            one = c + 3.0 + 0.5 * n_ops
            many = c * (serial + (1 - serial) / threads) + sync_us * n_ops + 3.0 + 0.5 * n_ops
            rows.append(Measurement(name, "conv", "fp32", one * 1e-3, 10_000, 100, n_ops, "CONV_2D", 1))
            rows.append(Measurement(name, "conv", "fp32", many * 1e-3, 10_000, 100, n_ops, "CONV_2D", threads))
    return rows


def test_thread_scaling_fit_recovers_the_serial_fraction_and_the_per_op_sync() -> None:
    serial, sync = fit_thread_scaling(_scaling_rows(0.2, 1.5, 2), 1, invoke_us=3.0, overhead_us=0.5)
    assert serial == pytest.approx(0.2, abs=1e-6) and sync == pytest.approx(1.5, abs=1e-6)
    serial, sync = fit_thread_scaling(_scaling_rows(0.05, 0.0, 4), 1, invoke_us=3.0, overhead_us=0.5)
    assert serial == pytest.approx(0.05, abs=1e-6) and sync == pytest.approx(0.0, abs=1e-6)
    # no multi-thread rows: the default Amdahl fraction and no sync
    assert fit_thread_scaling(_scaling_rows(0.2, 1.5, 2)[::2], 1, 3.0, 0.5) == (pytest.approx(0.12), 0.0)


def test_small_ops_do_not_scale_with_threads_but_large_ones_do() -> None:
    unit = _unit(serial_fraction=0.1, thread_sync_us=2.0, op_overhead_us=0.0)
    small = Op(0, "s", "ADD", "elementwise", (), (), "fp32", ops=20_000)
    large = Op(1, "l", "CONV_2D", "conv", (), (), "fp32", macs=10**8, ops=2 * 10**8)
    ratio_small = op_time(small, unit, threads=1).seconds / op_time(small, unit, threads=2).seconds
    ratio_large = op_time(large, unit, threads=1).seconds / op_time(large, unit, threads=2).seconds
    assert ratio_small < 1.0  # the hand-off costs more than the second thread saves
    assert ratio_large == pytest.approx(cpu_speedup(2, 0.1), rel=1e-3)


def test_bench_and_simulate_default_to_the_same_threads() -> None:
    unit = _unit(cores=os.cpu_count() or 1)  # calibrate writes os.cpu_count() cores
    assert default_threads() == effective_threads(unit, None)


def test_calibration_fit_keeps_own_kernel_efficiencies_apart() -> None:
    per_core = 2.5 * 32
    rows = []
    for op_type, family, eff in (("CONV_2D", "conv", 0.8), ("TRANSPOSE_CONV", "conv", 0.2)):
        for k, work in enumerate((2e6, 8e6)):
            seconds = work / (per_core * 1e9 * eff)
            rows.append(Measurement(f"{op_type}{k}", family, "fp32", (seconds * 1e6 + 3.5) * 1e-3, int(work), 1000, 1,
                                    op_type, 1))
    rows.append(Measurement("chain1", "chain", "fp32", 3.5e-3, 0, 0, 1, "ADD", 1))
    rows.append(Measurement("chain16", "chain", "fp32", 11.0e-3, 0, 0, 16, "ADD", 1))
    unit, _ = fit(rows, {**FACTS, "cores": 1}, threads=1)
    assert math.isclose(unit.efficiency["conv"], 0.8, rel_tol=0.02)
    assert math.isclose(unit.efficiency["TRANSPOSE_CONV@fp32"], 0.2, rel_tol=0.02)
