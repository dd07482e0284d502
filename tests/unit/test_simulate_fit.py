"""The measurement fitter (issue 12): recovers known parameters, parses benchmark_model logs and CSVs, and
writes/reads the fitted profile with its fit and validation tables; simulate reports the validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgeexport.catalog.devices import load_device, parse_device
from edgeexport.catalog.model import Validation
from edgeexport.catalog.writer import device_to_toml
from edgeexport.errors import DataError
from edgeexport.simulate.estimate import uncertainty_band
from edgeexport.simulate.fit import Sample, fit_unit, leave_one_architecture_out, predict, set_params, with_unit
from edgeexport.simulate.graph import Op, OpGraph, Tensor
from edgeexport.simulate.measurements import parse_benchmark_log, read_measurements


def _conv_graph(channels: int, size: int, layers: int, dtype: str = "int8") -> OpGraph:
    """A chain of 3x3 convs (and one add per layer) with exact MAC counts."""
    tensors: list[Tensor] = []
    ops: list[Op] = []
    nbytes = 1 if dtype == "int8" else 4

    def tensor(shape: tuple[int, ...], constant: bool = False) -> int:
        n = 1
        for d in shape:
            n *= d
        tensors.append(Tensor(len(tensors), f"t{len(tensors)}", shape, dtype, constant, n * nbytes))
        return len(tensors) - 1

    x = tensor((1, size, size, channels))
    first = x
    for i in range(layers):
        w = tensor((channels, 3, 3, channels), constant=True)
        y = tensor((1, size, size, channels))
        macs = size * size * channels * channels * 9
        act = size * size * channels * nbytes
        ops.append(Op(len(ops), f"conv{i}", "CONV_2D", "conv", (x, w), (y,), dtype, macs=macs, ops=2 * macs,
                      weight_bytes=channels * channels * 9 * nbytes, read_bytes=act, write_bytes=act))
        z = tensor((1, size, size, channels))
        ops.append(Op(len(ops), f"add{i}", "ADD", "elementwise", (y, x), (z,), dtype, ops=size * size * channels,
                      read_bytes=2 * act, write_bytes=act))
        x = z
    weights = sum(t.nbytes for t in tensors if t.constant)
    return OpGraph("tflite", None, tuple(tensors), tuple(ops), (first,), (x,), weights, weights, 0.0)


def _synthetic(device, unit_name: str, truth: dict[str, float], path: str, threads: int | None = None):
    true_unit = set_params(next(u for u in device.units if u.name == unit_name), truth)
    true_device = with_unit(device, true_unit)
    samples = []
    for arch, (channels, size, layers) in {"a": (32, 56, 4), "b": (64, 56, 3), "c": (128, 14, 12),
                                            "d": (16, 112, 2), "e": (256, 14, 6)}.items():
        graph = _conv_graph(channels, size, layers)
        ms = predict(Sample(graph, path, threads, 1.0, arch, arch, "int8"), true_device).total_ms
        samples.append(Sample(graph, path, threads, ms, arch, arch, "int8"))
    return samples


def _npu_device():
    """The Galaxy S24 with a fixed, unfitted NPU (the shipped profile's numbers change with every refit)."""
    device = load_device("galaxy-s24")
    npu = replace(device.unit("npu"), peak_gops={"fp16": 5710.0, "int8": 15740.0}, memory_bandwidth_gbps=76.8,
                  op_overhead_us=8.0, invoke_us=0.0, on_chip_bytes=None, efficiency={"default": 0.4, "conv": 0.75})
    return with_unit(device, npu)


def test_fitter_recovers_known_accelerator_parameters() -> None:
    device = _npu_device()
    truth = {"efficiency.conv@int8": 0.3, "efficiency.default@int8": 0.05, "op_overhead_us": 4.0, "invoke_us": 120.0}
    samples = _synthetic(device, "npu", truth, "npu")
    names = list(truth)
    fitted = fit_unit(device, "npu", samples, names, prior=0.0)
    for name, value in truth.items():
        assert fitted.parameters[name] == pytest.approx(value, rel=0.05), name
    assert fitted.rms_log < 0.01
    assert max(abs(r) for r in fitted.residuals_pct.values()) < 1.0


def test_fitter_recovers_cpu_serial_fraction_from_two_thread_counts() -> None:
    device = load_device("pixel-4")
    truth = {"efficiency.conv@int8": 0.4, "op_overhead_us": 8.0, "serial_fraction": 0.3}
    samples = _synthetic(device, "cpu", truth, "cpu", threads=1) + _synthetic(device, "cpu", truth, "cpu", threads=4)
    samples = [replace(s, label=f"{s.label}-{s.threads}") for s in samples]
    fitted = fit_unit(device, "cpu", samples, list(truth), prior=0.0)
    assert fitted.parameters["serial_fraction"] == pytest.approx(0.3, rel=0.05)
    assert fitted.parameters["efficiency.conv@int8"] == pytest.approx(0.4, rel=0.05)


def test_fitter_keeps_efficiencies_in_bounds_and_overheads_non_negative() -> None:
    device = _npu_device()
    samples = _synthetic(device, "npu", {"efficiency.conv@int8": 0.5}, "npu")
    # 50x faster than any efficiency <= 1 allows at the profile's peak: the fitter raises the peak instead
    fast = [replace(s, ms=s.ms / 50) for s in samples]
    fitted = fit_unit(device, "npu", fast, ["efficiency.conv@int8", "op_overhead_us", "invoke_us"])
    assert 0 < fitted.parameters["efficiency.conv@int8"] <= 1.0
    assert fitted.parameters["op_overhead_us"] >= 0 and fitted.parameters["invoke_us"] >= 0
    assert fitted.parameters.get("peak_gops.int8", 0) > device.unit("npu").peak_gops["int8"]


def test_leave_one_architecture_out_predicts_held_out_rows() -> None:
    device = _npu_device()
    samples = _synthetic(device, "npu", {"efficiency.conv@int8": 0.3, "invoke_us": 80.0}, "npu")
    cv = leave_one_architecture_out(device, "npu", samples, parameters=["efficiency.conv@int8", "invoke_us"], prior=0.0)
    stats = cv.stats()
    assert stats["rows"] == 5 and stats["architectures"] == 5
    assert stats["median_abs_pct"] < 5.0 and stats["within_10_pct"] >= 80


LOG = """STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/mobilenet.int8.tflite]
Use gpu: [0]
Loaded model /data/local/tmp/mobilenet.int8.tflite
The input model file size (MB): 4.3
Inference timings in us: Init: 26501, First inference: 9437, Warmup (avg): 5731.42, Inference (avg): 5180.94
Memory footprint delta from the start of the tool (MB): init=8.1 overall=12.4
STARTING!
Graph: [/data/local/tmp/resnet.fp32.tflite]
Use gpu: [1]
Inference timings in us: Init: 1000, First inference: 2000, Warmup (avg): 1500, Inference (avg): 1234.5
"""


def test_benchmark_model_log_parser(tmp_path: Path) -> None:
    rows = parse_benchmark_log(LOG, base=tmp_path)
    assert len(rows) == 2
    assert rows[0].ms == pytest.approx(5.18094) and rows[0].threads == 4 and rows[0].path == "cpu"
    assert rows[0].preset == "int8" and rows[0].model == str(tmp_path / "mobilenet.int8.tflite")
    assert rows[1].ms == pytest.approx(1.2345) and rows[1].path == "gpu" and rows[1].threads is None
    log = tmp_path / "run.log"
    log.write_text(LOG, encoding="utf-8")
    assert [r.ms for r in read_measurements(log)] == [r.ms for r in rows]
    with pytest.raises(DataError, match="Inference timings"):
        parse_benchmark_log("Graph: [x.tflite]\nno timings here\n")


def test_measurements_csv(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("device,unit,threads,model,input,options,preset,ms\n"
                   "pixel-3,cpu,4,MobileNet,128,alpha=0.25,int8,0.8\n"
                   ",nnapi,,my.int8.tflite,,,int8,2.0\n", encoding="utf-8")
    rows = read_measurements(csv)
    assert rows[0].path == "cpu" and rows[0].size == 128 and rows[0].options == "alpha=0.25"
    assert rows[1].path == "npu" and rows[1].is_artifact and rows[1].model == str(tmp_path / "my.int8.tflite")
    csv.write_text("unit,model\ncpu,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="columns"):
        read_measurements(csv)
    csv.write_text("unit,model,ms\nwarp-drive,x.tflite,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown unit"):
        read_measurements(csv)


def test_fit_and_validation_tables_round_trip_and_drive_the_band(tmp_path: Path) -> None:
    device = load_device("galaxy-s24")
    samples = _synthetic(device, "npu", {"efficiency.conv@int8": 0.3, "invoke_us": 80.0}, "npu")
    fitted = fit_unit(device, "npu", samples, ["efficiency.conv@int8", "invoke_us"])
    from edgeexport.catalog.model import FitRecord

    check = Validation(rows=5, architectures=5, median_abs_pct=12.0, within_10_pct=40.0, within_25_pct=80.0,
                       ratio_p10=0.8, ratio_p90=1.3, baseline_median_abs_pct=30.0, method="leave-one-architecture-out")
    sources = {**device.sources, "units.npu.efficiency.conv@int8": "F: fitted to 5 synthetic rows",
               "units.npu.invoke_us": "F: fitted to 5 synthetic rows"}
    profile = replace(with_unit(device, fitted.unit), sources=sources,
                      fits={"npu": FitRecord(5, "fitted to 5 synthetic rows", tuple(fitted.parameters),
                                             fitted.residuals_pct)},
                      validation={"npu": check})
    out = tmp_path / "galaxy-s24.toml"
    out.write_text(device_to_toml(profile), encoding="utf-8")
    back = parse_device(out)
    assert back.validation["npu"] == check
    assert back.fits["npu"].rows == 5 and set(back.fits["npu"].residuals_pct) == {s.label for s in samples}
    npu = back.unit("npu")
    assert npu is not None and npu.efficiency["conv@int8"] == pytest.approx(fitted.unit.efficiency["conv@int8"])
    assert npu.invoke_us == pytest.approx(fitted.parameters["invoke_us"])
    placement = predict(samples[0], back)
    low, high, text = uncertainty_band(back, placement)
    assert (low, high) == (0.8, 1.3)
    assert text.startswith("galaxy-s24 npu: validated on 5 published rows, median error 12 %")
    plain = replace(back, validation={}, fits={})
    assert "not validated" in uncertainty_band(plain, predict(samples[0], plain))[2]


def test_validation_table_rejects_unknown_units_and_keys(tmp_path: Path) -> None:
    text = (Path(load_device("galaxy-s24").path or "").read_text(encoding="utf-8")
            + '\n[validation.tpu]\nmethod = "x"\nrows = 1\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(Exception, match="validation.tpu"):
        parse_device(bad)
