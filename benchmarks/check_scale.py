"""Time `edgeexport check` on a 6 models x 4 devices x 3 presets matrix (72 cells): serially, with --jobs 2 and on a
local Ray cluster (2 CPUs), then project a cluster run from the measured per-cell times.

    python benchmarks/check_scale.py [--out build/check_scale] [--no-ray]

Each run is a fresh `edgeexport check` process (start-up and TensorFlow imports included). The models are the
digits sample and five small CNNs built here on the same 8x8 input (trained briefly so their outputs vary). The
projection schedules the serial run's per-cell times longest-first onto N workers, adds the per-worker start-up
measured in the --jobs 2 run, and says that it ignores scheduling and transfer overhead.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
DEVICES = ("pixel-8", "raspberry-pi-5", "galaxy-s24", "jetson-orin-nano")
PRESETS = ("fp32", "fp16", "int8")
BUILT = {"cnn4": (4, 1), "cnn8": (8, 1), "cnn16": (16, 1), "cnn8x2": (8, 2), "cnn16x2": (16, 2)}  # filters, convs


def build_models(directory: Path) -> list[Path]:
    import keras
    import numpy as np

    with np.load(SAMPLES / "digits.npz") as data:
        images, labels = data["test__image"], data["test__labels"]
    paths = [SAMPLES / "digits_cnn.keras"]
    for name, (filters, convs) in BUILT.items():
        path = directory / f"{name}.keras"
        paths.append(path)
        if path.exists():
            continue
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1), name="image")
        x = inputs
        for index in range(convs):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{index}")(x)
        x = keras.layers.Flatten()(x)
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x), name=name)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        model.fit(images, labels, epochs=30, batch_size=64, verbose=0)
        model.save(path)
    return paths


def write_config(directory: Path, models: list[Path]) -> Path:
    config = directory / "edgeexport.toml"
    data = SAMPLES / "digits.npz"
    config.write_text("[check]\nsamples = 64\n" + "".join(
        f"[[check.models]]\npath = '{m}'\ndevices = {list(DEVICES)}\npresets = {list(PRESETS)}\n"
        f"targets = ['tflite']\ncalibration = '{data}'\ndata = '{data}'\n" for m in models))
    return config


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(config: Path, out: Path, *flags: str) -> tuple[float, dict[str, Any], float]:
    """Wall seconds, check.json and CPU seconds of the check process and the descendants it waited for (its
    --jobs workers; Ray's workers belong to the raylet and are counted only as far as they were reaped)."""
    command = [sys.executable, "-m", "edgeexport", "check", "--config", str(config), "--out", str(out), *flags]
    print("$", " ".join(command[1:]), flush=True)
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 5, 6):
        sys.exit(f"check exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, json.loads((out / "check.json").read_text()), _children_cpu() - cpu


def makespan(times: list[float], workers: int, startup: float) -> float:
    """Longest-processing-time-first schedule of ``times`` on ``workers``, each paying ``startup`` once."""
    loads = [startup] * min(workers, len(times))
    heapq.heapify(loads)
    for t in sorted(times, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + t)
    return max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "check_scale")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    config = write_config(args.out, build_models(args.out))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start (shared with other jobs: timings are noisy)")
    runs = {"serial (--jobs 1)": run(config, args.out / "serial", "--jobs", "1"),
            "--jobs 2": run(config, args.out / "jobs2", "--jobs", "2")}
    if not args.no_ray:
        runs["--ray (local, 2 CPUs)"] = run(config, args.out / "ray", "--ray", "--jobs", "2")
    serial = runs["serial (--jobs 1)"][1]
    cells = serial["cells"]
    for name, (_, data, _) in runs.items():
        same = data["rows"] == serial["rows"]
        print(f"{name}: rows identical to the serial run: {same}")
    times = [float(c["seconds"]) for c in cells]
    # the first cell of the serial run pays for importing TensorFlow: its excess over the median is start-up
    startup = max(0.0, times[0] - statistics.median(times[1:]))
    steady = [statistics.median(times[1:])] + times[1:]
    print(f"\n{len(cells)} cells; per cell (serial, after start-up): median {statistics.median(steady):.2f} s, "
          f"max {max(steady):.2f} s; start-up (TensorFlow import, first cell) {startup:.1f} s\n")
    print("| run | wall s | cells/min | CPU s | CPU s / wall s |\n|---|---:|---:|---:|---:|")
    for name, (seconds, _, cpu) in runs.items():
        print(f"| {name} | {seconds:.1f} | {60 * len(cells) / seconds:.1f} | {cpu:.1f} | {cpu / seconds:.2f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}. CPU s / wall s is how many cores a run got on average "
          "(2.0 = both): --jobs 2 can only be faster than serial when it gets more than the serial run did")
    print("\nprojection from the serial per-cell times (longest first, each worker pays the start-up once; "
          "ignores scheduling, object-store transfer and contention):\n")
    print("| workers | projected s |\n|---:|---:|")
    for workers in (1, 2, 8, 24, 72):
        print(f"| {workers} | {makespan(steady, workers, startup):.1f} |")
    zoo = 50 * 18 * 4
    per_cell = statistics.mean(steady)
    print(f"\na zoo of 50 models x 18 devices x 4 presets ({zoo} cells) at this mean {per_cell:.2f} s/cell: "
          f"{zoo * per_cell / 3600:.2f} h on one worker, {makespan([per_cell] * zoo, 64, startup) / 60:.1f} min on "
          f"64 (real models convert in seconds to minutes: scale by your own per-cell time)")


if __name__ == "__main__":
    main()
