"""Peak resident memory per stage of a conversion (issue 17): the digits sample, MobileNetV2, ResNet152V2.

Usage (from the repo root; ALWAYS under a watchdog on a shared machine; ``ulimit -v`` kills TensorFlow, which
reserves far more virtual memory than it touches, so ``benchmarks/watchdog.py`` polls resident memory instead):

    PYTHONPATH=$PWD EDGEEXPORT_MAX_CHILD_RSS_MB=7000 python benchmarks/watchdog.py --limit-gib 9 -- \\
      python benchmarks/memory.py digits --preset fp32
    ... benchmarks/memory.py mobilenetv2 --preset int8        # keras.applications, random weights, 224x224
    ... benchmarks/memory.py resnet152v2 --preset int8        # 299x299, 60 M parameters

Stages are the pipeline's progress messages. For each, the parent's peak (VmHWM, reset with
``/proc/self/clear_refs`` at every stage boundary, so a stage's figure is its own peak, not the run's), what it
still holds when the stage ends (VmRSS: what stays resident while the next stage, e.g. the converter child, runs) and, for
conversions, the converter child's peak (``edgeexport.isolate.PEAKS``) and the parent's largest resident size while
that child ran (``isolate.PARENT_RESIDENT``). Calibration is ``synthetic`` for int8
(64 random samples) unless the model is digits (its real calibration split). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _model(name: str, folder: Path) -> tuple[Path, str | None]:
    """The model file and its calibration (None: synthetic)."""
    if name == "digits":
        return ROOT / "sample_models/digits_cnn.keras", str(ROOT / "sample_models/digits.npz")
    import keras

    keras.utils.set_random_seed(0)
    if name == "mobilenetv2":
        model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    elif name == "resnet152v2":
        model = keras.applications.ResNet152V2(weights=None, input_shape=(299, 299, 3))
    else:
        raise SystemExit(f"unknown model {name}")
    path = folder / f"{name}.keras"
    model.save(path)
    del model
    keras.backend.clear_session()
    return path, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["digits", "mobilenetv2", "resnet152v2"])
    parser.add_argument("--preset", default="fp32")
    parser.add_argument("--target", default="tflite")
    parser.add_argument("--samples", type=int, default=16, help="verification samples (default 16)")
    options = parser.parse_args()
    from edgeexport import isolate
    from edgeexport.api import ConvertOptions, VerifyOptions, convert

    rows: list[tuple[str, float, int, int]] = []
    current = ["start"]
    started = [time.perf_counter()]

    def stage(message: str) -> None:
        rows.append((current[0], time.perf_counter() - started[0], _status_kib("VmHWM"), _status_kib("VmRSS")))
        # Live, so a run the watchdog kills still shows how far it got.
        print(f"memory.py: {current[0][:50]} done: peak {rows[-1][2] / 1024:.0f} MiB, resident "
              f"{rows[-1][3] / 1024:.0f} MiB; next: {message}", file=sys.stderr, flush=True)
        _reset_peak()
        current[0], started[0] = message, time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        path, calibration = _model(options.model, Path(tmp))
        stage(f"build {options.model}")
        if options.preset != "fp32" and calibration is None:
            calibration = "synthetic"
        wall = time.perf_counter()
        try:
            convert(path, Path(tmp) / "out",
                    ConvertOptions(targets=(options.target,), preset=options.preset,
                                   calibration=calibration if options.preset != "fp32" else None,
                                   verify=VerifyOptions(samples=options.samples)), progress=stage)
            outcome = "ok"
        except Exception as err:  # noqa: BLE001 - the benchmark reports any failure as its outcome
            outcome = f"{type(err).__name__}: {err}"
        stage("end")
        wall = time.perf_counter() - wall
    print(f"{options.model} {options.target} {options.preset}: {outcome} in {wall:.1f} s "
          f"(pid {os.getpid()}, python {sys.version.split()[0]})")
    print(f"  {'stage':52s} {'seconds':>8s} {'parent peak MiB':>16s} {'resident at end':>16s}")
    for name, seconds, peak_kib, rss_kib in rows[1:]:
        print(f"  {name[:52]:52s} {seconds:8.1f} {peak_kib / 1024:16.0f} {rss_kib / 1024:16.0f}")
    for name, peak in isolate.PEAKS.items():
        print(f"  child: {name:45s} {'':8s} {peak / 2**20:16.0f}")
        held = isolate.PARENT_RESIDENT.get(name, 0)
        print(f"  parent resident while the child ran: {name:25s} {held / 2**20:16.0f}")


if __name__ == "__main__":
    main()
