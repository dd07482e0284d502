"""Does the simulator predict this machine on architectures it never saw? (issue 12, items 5 and 7)

1. Calibrate the host on the micro-benchmark suite only (a fresh profile in a temporary directory, never the
   user config).
2. Convert twenty keras.applications architectures (weights=None, small inputs) to fp32 and int8 .tflite and
   measure each with ``edgeexport bench`` (edgeexport.simulate.bench.bench, lowest p50 of three blocks) at 1
   thread and at the default thread count (this machine's cores, at most 4).
3. Host check (item 5): ``simulate --device <calibrated host>`` vs ``bench`` with the same threads on all
   twenty, none of which the calibration saw: median absolute error per thread count.
4. Ten-measurement fit (item 7): the first ten architectures are the user's measurements, written as a CSV
   of (artifact, threads, measured_ms) rows; a profile is fitted from those rows alone on top of the
   calibrated host (the base) and predicts the ten others. The fitter here is the one-parameter
   log-least-squares scale per thread count (``fit_scale``): the general fitter (``calibrate
   --measurements``) is issue 12 part A and plugs in at ``fit_from_rows``.

    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/host_fit.py [--quick] [--csv rows.csv]

Timings on a machine shared with other jobs are noisy: the two sides of every comparison are measured in the
same run with the same threads.
"""

from __future__ import annotations

import argparse
import csv
import math
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
    """The measurements in the interface part A's fitter reads: artifact, threads, measured_ms."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["artifact", "threads", "measured_ms"])
        for row in rows:
            writer.writerow([str(row.artifact), row.threads, f"{row.measured_ms:.4f}"])


def fit_scale(rows: list[Row]) -> dict[int, float]:
    """Per thread count, the factor k minimizing sum (log measured - log (k x simulated))^2: exp of the mean
    log ratio."""
    by_threads: dict[int, list[float]] = {}
    for row in rows:
        by_threads.setdefault(row.threads, []).append(math.log(row.measured_ms / row.simulated_ms))
    return {t: math.exp(statistics.fmean(v)) for t, v in by_threads.items()}


def fit_from_rows(rows: list[Row]) -> Callable[[Row], float]:
    """A predictor fitted from the measured rows alone (see the module docstring)."""
    scale = fit_scale(rows)
    return lambda row: row.simulated_ms * scale.get(row.threads, 1.0)


def ape(measured: float, predicted: float) -> float:
    return abs(predicted - measured) / measured * 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--csv", type=Path, default=None, help="also write the ten measured rows here")
    parser.add_argument("--presets", default="fp32,int8", help="comma-separated: fp32, int8")
    parser.add_argument("--profile", type=Path, default=None,
                        help="reuse a profile written by `edgeexport calibrate` instead of calibrating first")
    args = parser.parse_args()
    started = time.perf_counter()

    import keras

    from edgeexport.simulate import simulate
    from edgeexport.simulate.bench import default_threads
    from edgeexport.simulate.calibrate import calibrate
    from edgeexport.simulate.microbench import keras_to_tflite

    work = Path(tempfile.mkdtemp(prefix="edgeexport-hostfit-"))
    t0 = time.perf_counter()
    if args.profile is not None:
        from edgeexport.catalog import load_device

        host = load_device(args.profile)
    else:
        host = calibrate(work / "host.toml", threads=1).profile
    cpu = host.unit("cpu")
    assert cpu is not None
    print(f"calibrated in {time.perf_counter() - t0:.0f} s: serial fraction {cpu.serial_fraction}, "
          f"thread sync {cpu.thread_sync_us} us", flush=True)
    counts = sorted({1, default_threads()})
    rows: list[Row] = []
    for group, fitted in ((FIT, True), (PREDICT, False)):
        for name, build in group.items():
            if args.quick and name not in QUICK:
                continue
            keras.utils.set_random_seed(0)
            try:
                model = _fixed_batch(build())
            except Exception as err:  # noqa: BLE001 - an architecture this Keras lacks is reported, not fatal
                print(f"{name}: cannot build ({type(err).__name__}: {err})", flush=True)
                continue
            for preset in args.presets.split(","):
                path = work / f"{name}.{preset}.tflite"
                try:
                    path.write_bytes(keras_to_tflite(model, preset, samples=2))
                except Exception as err:  # noqa: BLE001 - a model the converter refuses is reported, not fatal
                    print(f"{name} {preset}: conversion failed ({type(err).__name__})", flush=True)
                    continue
                for threads in counts:
                    est = simulate(path, host, threads=threads, delegate="cpu")
                    row = Row(name, preset, path, threads, measure_ms(path, threads), est.p50_ms, fitted)
                    rows.append(row)
                    print(f"{name:<28} {preset:<5} {threads}T measured {row.measured_ms:8.3f} simulated "
                          f"{row.simulated_ms:8.3f} APE {ape(row.measured_ms, row.simulated_ms):5.1f} %"
                          + (" extrapolated" if est.extrapolated else ""), flush=True)
            keras.backend.clear_session()
    measured = [r for r in rows if r.fitted]
    if args.csv is not None:
        write_csv(measured, args.csv)
    predict = fit_from_rows(measured)
    print(f"\n{COMMAND}{' --quick' if args.quick else ''}: {len(rows)} rows, {time.perf_counter() - started:.0f} s")
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
    print("scale fitted from the ten measured architectures: "
          + ", ".join(f"{t}T x{k:.3f}" for t, k in sorted(fit_scale(measured).items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
