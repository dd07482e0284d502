"""How close is ``edgeexport simulate`` to reality?

1. Calibrate this machine on the micro-benchmark suite only (a fresh profile in a temporary directory).
2. For each architecture x preset (fp32, int8), compare ``simulate --device <calibrated host> --threads 1``
   with ``bench --threads 1`` and print the absolute percentage error (APE), its median and 90th percentile.
3. Simulate the published rows of /work/shared/DEVICES.md that the model zoo here can reproduce, on the
   matching shipped profiles, and print the error per row.
Writes benchmarks/RESULTS_sim.md (unless --no-write). Takes about 5-8 minutes on 2 shared cores.

    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/simulator_accuracy.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
COMMAND = "TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/simulator_accuracy.py"


def _apps(name: str, size: int, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        cls = getattr(keras.applications, name)
        return cls(input_shape=(size, size, 3), weights=None, classes=10, **kw)

    return build


def _small_cnn() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([keras.Input((64, 64, 3)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                             L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"),
                             L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")])


def _audio_1d() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([keras.Input((4000, 1)), L.Conv1D(16, 9, strides=2, activation="relu"), L.MaxPooling1D(4),
                             L.Conv1D(32, 9, activation="relu"), L.MaxPooling1D(4), L.Conv1D(64, 9, activation="relu"),
                             L.GlobalAveragePooling1D(), L.Dense(12)])


def _mlp() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([keras.Input((784,)), L.Dense(512, activation="relu"), L.Dense(256, activation="relu"),
                             L.Dense(10)])


def _transformer() -> Any:
    import keras

    L = keras.layers
    x_in = keras.Input((64, 64))
    h = L.LayerNormalization()(x_in)
    h = L.MultiHeadAttention(num_heads=4, key_dim=16)(h, h)
    x = L.Add()([x_in, h])
    h = L.LayerNormalization()(x)
    h = L.Dense(128, activation="relu")(h)
    h = L.Dense(64)(h)
    x = L.Add()([x, h])
    return keras.Model(x_in, L.Dense(10)(L.GlobalAveragePooling1D()(x)))


ARCHITECTURES: dict[str, Callable[[], Any]] = {
    "MobileNetV1-96": _apps("MobileNet", 96),
    "MobileNetV2-96": _apps("MobileNetV2", 96),
    "MobileNetV3Small-96": _apps("MobileNetV3Small", 96),
    "EfficientNetB0-96": _apps("EfficientNetB0", 96),
    "ResNet50-64": _apps("ResNet50", 64),
    "DenseNet121-64": _apps("DenseNet121", 64),
    "SmallCNN-64": _small_cnn,
    "Audio1D-4000": _audio_1d,
    "MLP-784": _mlp,
    "Transformer-64x64": _transformer,
}
QUICK = ("MobileNetV2-96", "SmallCNN-64", "MLP-784")


def convert(model: Any, preset: str) -> bytes:
    """fp32, or full-integer int8 with int8 I/O (random calibration data: the weights are random too)."""
    from edgeexport.simulate.microbench import keras_to_tflite

    return keras_to_tflite(model, preset, samples=2)


def _fixed_batch(model: Any) -> Any:
    """Rebuild with batch 1 so the artifact has static shapes, as edgeexport's converter does."""
    import keras

    inputs = keras.Input(batch_shape=(1, *model.inputs[0].shape[1:]))
    return keras.Model(inputs, model(inputs))


# Published rows (DEVICES.md section 2) we can reproduce: (label, model builder, preset, device, path, threads,
# published ms, source)
def _mbv1(size: int) -> Callable[[], Any]:
    return _apps("MobileNet", size)


PUBLISHED: tuple[tuple[str, str, str, str, str, int | None, float, str], ...] = (
    ("MobileNet V1 1.0 224", "mbv1-224", "fp32", "pixel-4", "cpu", 4, 14.0, "TFLite benchmarks.md (DEVICES.md 2.1a)"),
    ("MobileNet V1 1.0 224", "mbv1-224", "int8", "pixel-4", "cpu", 4, 5.0, "TFLite benchmarks.md, uint8 (2.1a)"),
    ("MobileNet V1 1.0 224", "mbv1-224", "fp32", "pixel-4", "gpu", None, 9.0, "TFLite benchmarks.md (2.1a)"),
    ("MobileNet V1 1.0 224", "mbv1-224", "int8", "pixel-4", "npu", None, 3.2, "TFLite benchmarks.md NNAPI uint8 (2.1a)"),
    ("MobileNet V1 1.0 224", "mbv1-224", "fp32", "iphone-xs", "cpu", 2, 14.8, "TFLite benchmarks.md (2.1a)"),
    ("MobileNet V1 1.0 224", "mbv1-224", "int8", "iphone-xs", "cpu", 2, 11.0, "TFLite benchmarks.md uint8 (2.1a)"),
    ("MobileNet V1 1.0 224", "mbv1-224", "fp32", "iphone-xs", "gpu", None, 3.4, "TFLite benchmarks.md Metal (2.1a)"),
    ("MobileNet V1 (224)", "mbv1-224", "int8", "coral-dev-board", "cpu", 4, 164.0, "coral.ai benchmarks, embedded CPU (2.6)"),
    ("MobileNet V1 (224)", "mbv1-224", "int8", "coral-dev-board", "npu", None, 2.4, "coral.ai benchmarks, Dev Board Edge TPU (2.6)"),
    ("PoseNet MobileNetV1 257 (backbone only)", "mbv1-257", "fp32", "raspberry-pi-4", "cpu", 4, 338.0,
     "TFLite pose_estimation overview, RPi 4 4T (2.1c)"),
    ("ResNet50 224 w8a8", "resnet50-224", "int8", "galaxy-s24", "npu", None, 0.593, "AI Hub perf.yaml 271ea871, TFLite (2.3a)"),
    ("ResNet50 224 float", "resnet50-224", "fp32", "galaxy-s24", "npu", None, 1.635, "AI Hub perf.yaml 271ea871, TFLite fp16 (2.3a)"),
)
PUBLISHED_MODELS: dict[str, Callable[[], Any]] = {
    "mbv1-224": _mbv1(224), "mbv1-257": _mbv1(257), "resnet50-224": _apps("ResNet50", 224),
}


NOTES = """### Where the simulator is worst, and why

* **Int8 transformer (softmax, layer norm, batch matmul in int8): about -58 %.** LiteRT runs several of these
  int8 ops on its reference kernels, outside XNNPACK, and the suite calibrates only the XNNPACK-delegated
  shapes (its int8 softmax case is one 1x1000 vector). Calibrating int8 softmax/norm at sequence shapes, as
  was done for HARD_SWISH/RELU6 (`REFERENCE_KERNEL_FACTOR` in `tflite_reader.py`), would fix it.
* **fp32 models with swish/hard-swish and squeeze-excite (EfficientNetB0, MobileNetV3Small): -19 to -24 %.**
  Many small element-wise ops (LOGISTIC + MUL per activation, MEAN + MUL per SE block) whose cost is per-op
  bookkeeping and cache traffic more than arithmetic; the single-op calibration cases see them in isolation.
* **Weight-heavy models (ResNet50-64: 94 MB fp32 / 24 MB int8 of weights for a 64x64 input)** are DRAM
  streaming; the bandwidth is shared with the other jobs on this machine, so their measured time moves 2-3x
  with the load (seen in earlier runs at load average > 6). The run above was at a lower load.
* **Published rows** use the shipped profiles as they are (efficiencies derived from one published row each,
  DEVICES.md section 3.6): MobileNet V1 on the Pixel 4 / iPhone XS CPU and GPU is within 5-24 %; rows whose
  profile numbers were not derived from a measurement (Coral's A53 CPU, the Raspberry Pi 4 PoseNet row, which
  has pose heads and an older TFLite, the Galaxy S24 NPU at 0.75 conv efficiency) are off by 40-170 %. Those
  profiles need per-device calibration; the simulator's placement, partition and memory logic is the same.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)} (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/RESULTS_sim.md")
    parser.add_argument("--no-published", action="store_true", help="skip the published-row comparisons")
    parser.add_argument("--only", default="", help="comma-separated architecture names (implies --no-write)")
    args = parser.parse_args()
    started = time.perf_counter()

    from edgeexport.catalog import load_device
    from edgeexport.simulate import simulate
    from edgeexport.simulate.bench import bench
    from edgeexport.simulate.calibrate import calibrate

    work = Path(tempfile.mkdtemp(prefix="edgeexport-simacc-"))
    t0 = time.perf_counter()
    cal = calibrate(work / "host.toml", threads=1)
    host = cal.profile
    print(f"calibrated {host.name} in {time.perf_counter() - t0:.0f} s -> {cal.path}", flush=True)

    import keras

    rows: list[tuple[str, str, float, float, float, str]] = []
    failures: list[str] = []
    names = QUICK if args.quick else tuple(ARCHITECTURES)
    if args.only:
        names = tuple(n for n in args.only.split(",") if n in ARCHITECTURES)
        args.no_write = True
    for name in names:
        keras.utils.set_random_seed(0)
        model = _fixed_batch(ARCHITECTURES[name]())
        for preset in ("fp32", "int8"):
            path = work / f"{name}_{preset}.tflite"
            try:
                path.write_bytes(convert(model, preset))
            except Exception as err:  # noqa: BLE001 - a model the converter refuses is reported, not fatal
                failures.append(f"{name} {preset}: conversion failed ({type(err).__name__})")
                print(failures[-1], flush=True)
                continue
            est = simulate(path, host, threads=1, delegate="cpu")
            # lowest p50 of three blocks: the 2 cores are shared, and a neighbour's burst inflates one block
            measured = min(bench(path, threads=1, runs=10, min_seconds=0.15).p50_ms for _ in range(3))
            ape = abs(est.p50_ms - measured) / measured * 100
            top = est.family_ms[0][0] if est.family_ms else "-"
            rows.append((name, preset, est.p50_ms, measured, ape, top))
            print(f"{name:<22} {preset:<5} simulated {est.p50_ms:9.3f} ms  measured {measured:9.3f} ms  "
                  f"APE {ape:5.1f} %  (most time: {top})", flush=True)
        keras.backend.clear_session()

    apes = [r[4] for r in rows]
    median = statistics.median(apes) if apes else float("nan")
    p90 = float(np.percentile(apes, 90)) if apes else float("nan")
    print(f"\n{len(rows)} pairs: median APE {median:.1f} %, p90 APE {p90:.1f} %  (goal: < 15 %, < 30 %)")

    published: list[tuple[str, str, str, str, float, float, float, str]] = []
    if not args.no_published and not args.quick:
        built: dict[tuple[str, str], Path] = {}
        for label, key, preset, device_name, delegate, threads, ms, source in PUBLISHED:
            if (key, preset) not in built:
                keras.utils.set_random_seed(0)
                model = _fixed_batch(PUBLISHED_MODELS[key]())
                path = work / f"{key}_{preset}.tflite"
                path.write_bytes(convert(model, preset))
                built[(key, preset)] = path
                keras.backend.clear_session()
            est = simulate(built[(key, preset)], load_device(device_name), threads=threads, delegate=delegate)
            err = (est.p50_ms - ms) / ms * 100
            where = f"{delegate}" + (f" {threads}T" if threads else "")
            published.append((label, preset, device_name, where, est.p50_ms, ms, err, source))
            print(f"{label:<40} {preset:<5} {device_name:<16} {where:<7} simulated {est.p50_ms:9.3f} ms  "
                  f"published {ms:8.3f} ms  error {err:+6.1f} %", flush=True)

    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s; command: {COMMAND}")
    if not args.no_write and not args.quick:
        _write(rows, median, p90, published, failures, cal, total)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _write(rows: list[Any], median: float, p90: float, published: list[Any], failures: list[str], cal: Any,
           total: float) -> None:
    cpu = next(u for u in cal.profile.units if u.kind == "cpu")
    lines = [
        "## Simulator accuracy (edgeexport simulate vs edgeexport bench, this machine)",
        "",
        f"Command: `{COMMAND}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {total:.0f} s). "
        "Calibration used the micro-benchmark suite only (single-op models); none of the models below were seen "
        "by the fit. Both sides use 1 LiteRT thread (2 cores shared with other jobs); measured = the lowest p50 of "
        "three blocks of at least 10 runs / 0.15 s. Weights are random "
        "(`weights=None`), which does not change the time of dense kernels.",
        "",
        f"Calibrated host: fp32 peak {cpu.peak_gops['fp32']:g} GOP/s, int8 {cpu.peak_gops['int8']:g} GOP/s, "
        f"bandwidth {cpu.memory_bandwidth_gbps:g} GB/s, per-op overhead {cpu.op_overhead_us:g} us, efficiency conv "
        f"{cpu.efficiency.get('conv', 0):.2f} / depthwise {cpu.efficiency.get('depthwise', 0):.2f} / fc "
        f"{cpu.efficiency.get('fc', 0):.2f}; calibration took {cal.seconds:.0f} s.",
        "",
        "| model | preset | simulated p50 (ms) | measured p50 (ms) | APE (%) | most time in |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {p} | {s:.3f} | {m:.3f} | {a:.1f} | {t} |" for n, p, s, m, a, t in rows]
    lines += ["", f"**{len(rows)} pairs: median APE {median:.1f} %, p90 APE {p90:.1f} %** (goal < 15 % / < 30 %).", ""]
    if failures:
        lines += ["Not compared: " + "; ".join(failures) + ".", ""]
    if published:
        lines += [
            "### Published rows (DEVICES.md) simulated on the shipped profiles",
            "",
            "| model | preset | device | path | simulated (ms) | published (ms) | error (%) | source |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} | {e:.3f} | {f:g} | {g:+.1f} | {h} |" for a, b, c, d, e, f, g, h in published]
        lines.append("")
    lines += [NOTES]
    (HERE / "RESULTS_sim.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
