"""The cost of running the converters in a child process (issue 17): the digits conversion with and without it.

Usage (from the repo root):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/isolation.py [--repeats 3] [--targets tflite coreml]

Each repeat runs ``edgeexport convert sample_models/digits_cnn.keras --no-verify`` as a fresh process twice,
once with ``EDGEEXPORT_ISOLATE=0`` (converters in-process) and once with the default (forkserver child),
alternating so that load on a shared machine hits both alike. It prints wall-clock seconds of the whole
command, its CPU time with all descendants (the forkserver is reaped, so it counts), and the report's sum of ``conversion_seconds`` (the converter's own time, measured inside the child).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(isolate: bool, targets: list[str]) -> tuple[float, float, float]:
    """(wall seconds of the command, its CPU seconds with every descendant, summed conversion_seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "EDGEEXPORT_ISOLATE": "1" if isolate else "0", "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "edgeexport", "convert", str(ROOT / "sample_models/digits_cnn.keras"),
                "--no-verify", "--out", tmp]
        for target in targets:
            args += ["--target", target]
        started, cpu = time.perf_counter(), _children_cpu()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
        report = json.loads((Path(tmp) / "report.json").read_text())
        return wall, cpu, sum(a["conversion_seconds"] for a in report["artifacts"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--targets", nargs="+", default=["tflite", "coreml"])
    options = parser.parse_args()
    walls: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    converts: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(options.repeats):
        for isolate in (False, True):
            wall, cpu, convert = run_once(isolate, options.targets)
            walls[isolate].append(wall)
            cpus[isolate].append(cpu)
            converts[isolate].append(convert)
    print(f"digits_cnn.keras -> {' + '.join(options.targets)}, --no-verify, {options.repeats} repeats (median)")
    for isolate in (False, True):
        label = "child process (default)" if isolate else "in-process (EDGEEXPORT_ISOLATE=0)"
        print(f"  {label:36s} wall {statistics.median(walls[isolate]):6.2f} s   "
              f"cpu {statistics.median(cpus[isolate]):6.2f} s   "
              f"converters {statistics.median(converts[isolate]):6.2f} s   runs {[round(w, 1) for w in walls[isolate]]}")
    extra = statistics.median(walls[True]) - statistics.median(walls[False])
    extra_cpu = statistics.median(cpus[True]) - statistics.median(cpus[False])
    print(f"  child process costs {extra:+.2f} s wall ({statistics.median(walls[True]) / statistics.median(walls[False]):.2f}x)"
          f" and {extra_cpu:+.2f} s CPU per command")


if __name__ == "__main__":
    main()
