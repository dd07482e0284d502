"""Does the simulator predict this machine on architectures it never saw? (issue 12, items 5 and 7)

1. Calibrate the host on the micro-benchmark suite only (a fresh profile in a temporary directory, never the
   user config).
2. Convert twenty keras.applications architectures (weights=None, small inputs) to fp32 and int8 .tflite and
   measure each with ``edgeexport bench`` (edgeexport.simulate.bench.bench, lowest p50 of three blocks) at 1
   thread and at the default thread count (this machine's cores, at most 4).
3. Host check (item 5): ``simulate --device <calibrated host>`` vs ``bench`` with the same threads on all
   twenty, none of which the calibration saw: median absolute error per thread count.
4. Ten-measurement fit (item 7): the first ten architectures are the user's measurements, written as a
   measurements CSV (unit, threads, model = artifact, preset, ms); ``edgeexport calibrate --measurements
   CSV --base <the shipped generic host CPU placeholder> --out host-fit.toml`` (the real fitter,
   ``simulate/fit.py``, run as a user would) fits a profile from those rows alone, without the calibration,
   and ``simulate`` with that profile predicts the ten other architectures.

    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/host_fit.py [--quick] [--csv rows.csv] [--artifacts DIR]
    python benchmarks/host_fit.py --replay host_fit.log --artifacts DIR --profile host.toml

``--artifacts DIR`` keeps the converted artifacts there and reuses them (convert under ``/work/wt/heavy``,
then time under ``/work/wt/timed``); ``--replay`` re-reads the measured values of an earlier run's log instead
of measuring (for changes to the simulator: the figures it prints are that run's measurements).

Timings on a machine shared with other jobs are noisy: the two sides of every comparison are measured in the
same run with the same threads.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

COMMAND = "TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/host_fit.py"


def _apps(name: str, size: int, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        cls = getattr(keras.applications, name)
        return cls(input_shape=(size, size, 3), weights=None, classes=10, **kw)

    return build


# the user's ten measured architectures, then the ten the fit must predict
FIT: dict[str, Callable[[], Any]] = {
    "MobileNet-a0.5-96": _apps("MobileNet", 96, alpha=0.5),
    "MobileNetV2-a0.5-96": _apps("MobileNetV2", 96, alpha=0.5),
    "MobileNetV3Small-96": _apps("MobileNetV3Small", 96),
    "EfficientNetB0-64": _apps("EfficientNetB0", 64),
    "ResNet50-64": _apps("ResNet50", 64),
    "DenseNet121-64": _apps("DenseNet121", 64),
    "VGG16-64": _apps("VGG16", 64),
    "InceptionV3-75": _apps("InceptionV3", 75),
    "MobileNet-a0.25-128": _apps("MobileNet", 128, alpha=0.25),
    "Xception-71": _apps("Xception", 71),
}
PREDICT: dict[str, Callable[[], Any]] = {
    "MobileNet-a1.0-96": _apps("MobileNet", 96),
    "MobileNetV2-a1.0-96": _apps("MobileNetV2", 96),
    "MobileNetV3Large-96": _apps("MobileNetV3Large", 96),
    "EfficientNetB1-64": _apps("EfficientNetB1", 64),
    "EfficientNetV2B0-64": _apps("EfficientNetV2B0", 64),
    "ResNet50V2-64": _apps("ResNet50V2", 64),
    "EfficientNetB2-64": _apps("EfficientNetB2", 64),
    "MobileNetV2-a0.75-128": _apps("MobileNetV2", 128, alpha=0.75),
    "MobileNet-a0.75-128": _apps("MobileNet", 128, alpha=0.75),
    "MobileNetV3Small-a0.75-128": _apps("MobileNetV3Small", 128, alpha=0.75),
}
QUICK = ("MobileNet-a0.5-96", "MobileNetV3Small-96", "MobileNet-a1.0-96", "MobileNetV3Large-96")


@dataclass(frozen=True)
class Row:
    """One artifact measured and simulated at one thread count (milliseconds)."""

    name: str
    preset: str
    artifact: Path
    threads: int
    measured_ms: float
    simulated_ms: float
    fitted: bool  # True: one of the user's ten measurements


def _fixed_batch(model: Any) -> Any:
    import keras

    inputs = keras.Input(batch_shape=(1, *model.inputs[0].shape[1:]))
    return keras.Model(inputs, model(inputs))


def measure_ms(path: Path, threads: int) -> float:
    """``edgeexport bench`` on a shared machine: the lowest p50 of three blocks of >= 20 runs / 0.2 s."""
    from edgeexport.simulate.bench import bench

    return min(bench(path, threads=threads, runs=20, warmup=5, min_seconds=0.2).p50_ms for _ in range(3))


def write_csv(rows: list[Row], path: Path) -> None:
    """The measurements in the CSV format ``edgeexport calibrate --measurements`` reads."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit", "threads", "model", "preset", "ms", "source"])
        for row in rows:
            writer.writerow(["cpu", row.threads, str(row.artifact), row.preset, f"{row.measured_ms:.4f}",
                             "edgeexport bench on this machine (benchmarks/host_fit.py)"])


# the generic CPU the ten-measurement fit starts from: the shipped host placeholder (not the calibration)
GENERIC_CPU = Path(__file__).resolve().parent.parent / "edgeexport" / "catalog" / "data" / "devices" / "host.toml"


def fit_from_rows(rows: list[Row], work: Path) -> Callable[[Row], float]:
    """Fit a profile to ``rows`` alone with ``edgeexport calibrate --measurements`` (``--base`` GENERIC_CPU)
    and return the predictor ``simulate`` with that profile gives (see the module docstring)."""
    import subprocess
    import sys

    from edgeexport.catalog.devices import parse_device
    from edgeexport.simulate import simulate

    measured, out = work / "ten_measurements.csv", work / "host-fit.toml"
    write_csv(rows, measured)
    cmd = [sys.executable, "-m", "edgeexport", "calibrate", "--measurements", str(measured), "--base",
           str(GENERIC_CPU), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    print("$ edgeexport calibrate --measurements ten_measurements.csv --base <generic CPU> --out host-fit.toml")
    print("\n".join(f"  {line}" for line in done.stdout.strip().splitlines()[-6:]))
    if done.returncode != 0:
        raise SystemExit(f"calibrate --measurements failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    fitted = parse_device(out)
    return lambda row: simulate(row.artifact, fitted, threads=row.threads, delegate="cpu").p50_ms


def replayed(log: Path) -> dict[tuple[str, str, int], float]:
    """(name, preset, threads) -> measured ms of every row line of an earlier run's output."""
    found: dict[tuple[str, str, int], float] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[2].endswith("T") and parts[3] == "measured":
            found[(parts[0], parts[1], int(parts[2][:-1]))] = float(parts[4])
    return found


def ape(measured: float, predicted: float) -> float:
    return abs(predicted - measured) / measured * 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--csv", type=Path, default=None, help="also write the ten measured rows here")
    parser.add_argument("--presets", default="fp32,int8", help="comma-separated: fp32, int8")
    parser.add_argument("--profile", type=Path, default=None,
                        help="reuse a profile written by `edgeexport calibrate` instead of calibrating first")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="keep converted artifacts in DIR and reuse those already there")
    parser.add_argument("--replay", type=Path, default=None,
                        help="take the measured values from this earlier output instead of measuring")
    parser.add_argument("--convert-only", action="store_true", help="convert into --artifacts and stop")
    args = parser.parse_args()
    replay = replayed(args.replay) if args.replay is not None else None
    started = time.perf_counter()

    import keras

    from edgeexport.simulate import simulate
    from edgeexport.simulate.bench import default_threads
    from edgeexport.simulate.calibrate import calibrate
    from edgeexport.simulate.microbench import keras_to_tflite

    work = Path(tempfile.mkdtemp(prefix="edgeexport-hostfit-"))
    store = args.artifacts or work
    store.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.convert_only:
        host = None
    elif args.profile is not None:
        from edgeexport.catalog import load_device

        host = load_device(args.profile)
    else:
        host = calibrate(work / "host.toml", threads=1).profile
    cpu = host.unit("cpu") if host is not None else None
    if cpu is not None:
        print(f"calibrated in {time.perf_counter() - t0:.0f} s: serial fraction {cpu.serial_fraction}, "
              f"thread sync {cpu.thread_sync_us} us, DRAM {cpu.memory_bandwidth_gbps} GB/s", flush=True)
    counts = sorted({1, default_threads()})
    rows: list[Row] = []
    for group, fitted in ((FIT, True), (PREDICT, False)):
        for name, build in group.items():
            if args.quick and name not in QUICK:
                continue
            model = None
            for preset in args.presets.split(","):
                path = store / f"{name}.{preset}.tflite"
                if not path.is_file():
                    try:
                        if model is None:
                            keras.utils.set_random_seed(0)
                            model = _fixed_batch(build())
                        path.write_bytes(keras_to_tflite(model, preset, samples=2))
                    except Exception as err:  # a model the converter refuses is reported, not fatal
                        print(f"{name} {preset}: cannot build or convert ({type(err).__name__}: {err})", flush=True)
                        continue
                if host is None:
                    continue
                for threads in counts:
                    est = simulate(path, host, threads=threads, delegate="cpu")
                    ms = replay.get((name, preset, threads)) if replay is not None else measure_ms(path, threads)
                    if ms is None:
                        continue
                    row = Row(name, preset, path, threads, ms, est.p50_ms, fitted)
                    rows.append(row)
                    print(f"{name:<28} {preset:<5} {threads}T measured {row.measured_ms:8.3f} simulated "
                          f"{row.simulated_ms:8.3f} APE {ape(row.measured_ms, row.simulated_ms):5.1f} %"
                          + (" extrapolated" if est.extrapolated else ""), flush=True)
            keras.backend.clear_session()
    if host is None:
        print(f"converted into {store}")
        return 0
    measured = [r for r in rows if r.fitted]
    if args.csv is not None:
        write_csv(measured, args.csv)
    print(f"\n{COMMAND}{' --quick' if args.quick else ''}{' (replayed measurements)' if replay else ''}: "
          f"{len(rows)} rows, {time.perf_counter() - started:.0f} s")
    predict = fit_from_rows(measured, work)
    for threads in counts:
        calib = [ape(r.measured_ms, r.simulated_ms) for r in rows if r.threads == threads]
        held = [r for r in rows if r.threads == threads and not r.fitted]
        fitted_err = [ape(r.measured_ms, predict(r)) for r in held]
        calib_held = [ape(r.measured_ms, r.simulated_ms) for r in held]
        print(f"{threads} thread(s): calibrated host vs bench on all {len(calib)} unseen rows: median APE "
              f"{statistics.median(calib):.1f} %, p90 {sorted(calib)[int(0.9 * (len(calib) - 1))]:.1f} %")
        if held:
            print(f"{threads} thread(s): ten-measurement fit on the {len(held)} held-out rows: median APE "
                  f"{statistics.median(fitted_err):.1f} % (calibration alone: {statistics.median(calib_held):.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
