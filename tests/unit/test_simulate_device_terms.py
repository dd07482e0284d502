"""Device cost terms of issue 12 (GPU occupancy and kernel linking, Edge TPU per-layer cost, weight streaming
and prefix-only mapping): the fitter recovers each from synthetic rows, and the loader/writer keep them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgeexport.catalog.devices import load_device, parse_device
from edgeexport.catalog.writer import device_to_toml
from edgeexport.simulate.cost import occupancy
from edgeexport.simulate.fit import Sample, default_parameters, fit_unit, predict, set_params, with_unit
from edgeexport.simulate.placement import place
from tests.unit.test_simulate_fit import _conv_graph

# (channels, size, layers): output elements per conv from 14x14x128 = 25 k to 112x112x16 = 200 k
SHAPES = {"a": (32, 56, 4), "b": (64, 56, 3), "c": (128, 14, 12), "d": (16, 112, 2), "e": (256, 14, 6),
          "f": (64, 28, 5)}


def _rows(device, unit_name: str, truth: dict[str, float], path: str) -> list[Sample]:
    true_device = with_unit(device, set_params(next(u for u in device.units if u.name == unit_name), truth))
    rows = []
    for arch, (channels, size, layers) in SHAPES.items():
        graph = _conv_graph(channels, size, layers)
        ms = predict(Sample(graph, path, None, 1.0, arch, arch, "int8"), true_device).total_ms
        rows.append(Sample(graph, path, None, ms, arch, arch, "int8"))
    return rows


def _gpu_device():
    device = load_device("pixel-3")
    gpu = replace(device.unit("gpu"), op_overhead_us=50.0, invoke_us=0.0, on_chip_bytes=0, occupancy_elements=16384.0,
                  efficiency={"default": 0.08, "conv": 0.1})
    return with_unit(device, gpu)


def _tpu_device():
    device = load_device("coral-dev-board")
    tpu = replace(device.unit("tpu"), op_overhead_us=30.0, invoke_us=0.0, on_chip_bytes=200_000,
                  memory_bandwidth_gbps=1.0, efficiency={"default": 0.1, "conv": 0.15})
    return with_unit(device, tpu)


def test_occupancy_slows_only_kernels_with_few_output_elements() -> None:
    gpu = replace(_gpu_device().unit("gpu"), occupancy_elements=50_000.0)
    small = _conv_graph(128, 14, 1).ops[0]  # 25 088 output elements
    large = _conv_graph(32, 56, 1).ops[0]  # 100 352
    assert occupancy(gpu, small) == pytest.approx(25_088 / 75_088)
    assert occupancy(gpu, large) == pytest.approx(100_352 / 150_352)
    assert occupancy(gpu, large) > 2 * occupancy(replace(gpu, occupancy_elements=200_000.0), small) / 0.9
    assert occupancy(replace(gpu, occupancy_elements=None), small) == 1.0


def test_fitter_recovers_gpu_occupancy_launch_cost_and_efficiency() -> None:
    device = _gpu_device()
    truth = {"efficiency.conv@fp16": 0.3, "op_overhead_us": 20.0, "occupancy_elements": 60_000.0}
    rows = _rows(device, "gpu", truth, "gpu")
    assert "occupancy_elements" in default_parameters(device, device.unit("gpu"), rows)
    fitted = fit_unit(device, "gpu", rows, list(truth), prior=0.0)
    for name, value in truth.items():
        assert fitted.parameters[name] == pytest.approx(value, rel=0.05), name
    assert fitted.rms_log < 0.01


def test_gpu_links_elementwise_ops_into_the_previous_kernel() -> None:
    device = _gpu_device()
    graph = _conv_graph(32, 56, 3)  # conv, add, conv, add, ...: each add reads the conv just before it
    on_gpu = place(graph, device, "gpu")
    adds = [t for op, t in zip(graph.ops, on_gpu.times, strict=True) if op.op_type == "ADD"]
    assert adds and all(t.overhead_s == 0.0 and t.memory_s == 0.0 for t in adds)
    convs = [t for op, t in zip(graph.ops, on_gpu.times, strict=True) if op.op_type == "CONV_2D"]
    assert all(t.overhead_s == pytest.approx(50e-6) for t in convs)


def test_tpu_fits_its_per_layer_cost_and_streaming_bandwidth_from_few_rows() -> None:
    device = _tpu_device()
    truth = {"efficiency.conv@int8": 0.4, "op_overhead_us": 60.0, "memory_bandwidth_gbps": 0.4}
    rows = _rows(device, "tpu", truth, "npu")
    names = default_parameters(device, device.unit("tpu"), rows)
    assert len(rows) < 8 and "op_overhead_us" in names and "memory_bandwidth_gbps" in names
    fitted = fit_unit(device, "tpu", rows, list(truth), prior=0.0)
    for name, value in truth.items():
        assert fitted.parameters[name] == pytest.approx(value, rel=0.05), name


def test_tpu_runs_only_the_prefix_before_its_first_unsupported_op() -> None:
    device = _tpu_device()
    # no element-wise ops on this TPU: the first ADD (op 1) and everything after it must fall back
    tpu = replace(device.unit("tpu"), op_families=frozenset({"conv"}))
    device = with_unit(device, tpu)
    graph = _conv_graph(32, 56, 3)
    placed = place(graph, device, "npu")
    assert placed.units[0] == "tpu"
    assert set(placed.units[1:]) == {"cpu"}
    # without the prefix rule (an NPU that partitions freely) the later convs would go back to the accelerator
    free = with_unit(device, replace(tpu, kind="npu"))
    assert place(graph, free, "npu").units[2] == "tpu"
    assert placed.total_ms > place(graph, free, "npu").total_ms


def test_occupancy_elements_round_trip_through_the_profile(tmp_path: Path) -> None:
    base = Path(__file__).resolve().parents[2] / "edgeexport/catalog/data/measurements/base/pixel-3.toml"
    device = parse_device(base)
    path = tmp_path / "p.toml"
    path.write_text(device_to_toml(device, header="test"), encoding="utf-8")
    back = parse_device(path)
    assert back.unit("gpu").occupancy_elements == 16384.0
    assert back.unit("cpu").occupancy_elements is None


def test_robust_fit_is_not_dragged_by_one_row_of_another_model() -> None:
    """One row of six measured 2.5x slower than the model it names (a mislabelled published model, like the
    Coral 'densenet'): the robust (Cauchy) fit keeps the other five within 3 % and the per-layer cost within
    10 % of the truth, while plain least squares moves the parameters so that the five pay for it (21-25 %)."""
    device = _tpu_device()
    truth = {"efficiency.conv@int8": 0.4, "op_overhead_us": 60.0, "memory_bandwidth_gbps": 0.4}
    rows = _rows(device, "tpu", truth, "npu")
    rows[0] = replace(rows[0], ms=rows[0].ms * 2.5)
    robust = fit_unit(device, "tpu", rows, list(truth), prior=0.0, robust=True)
    plain = fit_unit(device, "tpu", rows, list(truth), prior=0.0, robust=False)
    good = [r.label for r in rows[1:]]
    assert max(abs(robust.residuals_pct[k]) for k in good) < 3.0
    assert robust.parameters["op_overhead_us"] == pytest.approx(60.0, rel=0.1)
    assert max(abs(plain.residuals_pct[k]) for k in good) > 2 * max(abs(robust.residuals_pct[k]) for k in good)


def test_robust_residuals_are_the_cauchy_loss() -> None:
    import numpy as np

    from edgeexport.simulate.fit import robust_residuals

    r = np.array([0.0, 0.02, -0.02, 0.2, 1.0])
    out = robust_residuals(r, scale=0.2)
    # Cauchy: rho = c^2 ln(1 + (r/c)^2); at r = c: 0.04 x ln 2 = 0.027726
    assert out[3] ** 2 == pytest.approx(0.027726, rel=1e-4)
    assert out[1] == pytest.approx(0.02, rel=0.01) and out[2] == pytest.approx(-0.02, rel=0.01)
    assert out[4] ** 2 == pytest.approx(0.04 * np.log(26.0), rel=1e-6)  # 0.130 where squares give 1.0
    assert out[0] == 0.0


def test_tpu_ops_without_macs_cost_their_activation_bytes_at_vector_gbps() -> None:
    """Hand count: the ADD of a 56x56x32 int8 chain reads 2 x 100 352 bytes and writes 100 352: 301 056 bytes
    at 2 GB/s = 150.5 us, plus the 30 us per-layer cost (the activations fit on chip: no DRAM trip); a conv
    (it has MACs) is not priced by vector_gbps."""
    from edgeexport.simulate.cost import op_time

    device = _tpu_device()
    tpu = replace(device.unit("tpu"), vector_gbps=2.0, on_chip_bytes=8_000_000)
    graph = _conv_graph(32, 56, 1)
    conv, add = graph.ops
    assert add.read_bytes + add.write_bytes == 301_056
    t = op_time(add, tpu, dtype="int8")
    assert t.seconds == pytest.approx(301_056 / 2e9 + 30e-6, rel=1e-9)
    assert t.bound == "memory"
    # without the term the same ADD costs its per-layer cost and a negligible share of the 4 TOPS peak
    plain = op_time(add, replace(tpu, vector_gbps=None), dtype="int8")
    assert plain.seconds < 31e-6
    assert op_time(conv, tpu, dtype="int8").seconds == pytest.approx(op_time(conv, replace(tpu, vector_gbps=None),
                                                                             dtype="int8").seconds)


def test_fitter_recovers_tpu_vector_rate_and_the_profile_keeps_it(tmp_path: Path) -> None:
    base = Path(__file__).resolve().parents[2] / "edgeexport/catalog/data/measurements/base/coral-dev-board.toml"
    device = parse_device(base)  # the base profile states vector_gbps (4 GB/s) with its source
    assert device.unit("tpu").vector_gbps == 4.0
    device = with_unit(device, replace(device.unit("tpu"), vector_gbps=5.0, on_chip_bytes=200_000,
                                       memory_bandwidth_gbps=1.0))
    truth = {"efficiency.conv@int8": 0.4, "op_overhead_us": 60.0, "vector_gbps": 1.5}
    rows = _rows(device, "tpu", truth, "npu")
    assert "vector_gbps" in default_parameters(device, device.unit("tpu"), rows)
    fitted = fit_unit(device, "tpu", rows, list(truth), prior=0.0)
    for name, value in truth.items():
        assert fitted.parameters[name] == pytest.approx(value, rel=0.05), name
    path = tmp_path / "tpu.toml"
    sources = {**device.sources, **{f"units.tpu.{k}": "F: test" for k in fitted.parameters}}
    path.write_text(device_to_toml(replace(with_unit(device, fitted.unit), sources=sources), header="test"), encoding="utf-8")
    assert parse_device(path).unit("tpu").vector_gbps == pytest.approx(1.5, rel=0.05)
