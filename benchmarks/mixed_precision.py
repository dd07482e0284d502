"""fp16 vs plain int8 vs the searched mixed-precision recipe (issue 13), per model and target.

Usage (from the repo root; one heavy process at a time on a shared machine):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/mixed_precision.py              # all three models
    PYTHONPATH=$PWD .venv/bin/python benchmarks/mixed_precision.py outlier      # one of: outlier digits mobilenet

Models: the digits CNN with one outlier conv1 channel (``sample_models/outlier_cnn.py``), the digits CNN itself
(``sample_models/digits_cnn.keras``), both judged on accuracy drop (points) over the 360 labelled test samples of
``digits.npz`` with the budget ``--max-accuracy-drop 1``; and keras.applications MobileNetV2 (alpha 0.35, 64x64,
10 logits, weights=None: random weights, nothing downloaded; logits rather than softmax so the outputs vary, and
BatchNorm statistics set from 32 random images so activations do not vanish) judged on SQNR (dB, ``--min-sqnr 20``) over 32
seeded random inputs, calibrated on 64 synthetic samples, since a random-weight classifier has no accuracy to lose.
TFLite artifacts are simulated on pixel-8, raspberry-pi-5 and iphone-15-pro (its LiteRT paths), Core ML artifacts on
iphone-15-pro (a Core ML package has no LiteRT latency: those columns say "-"); "pixel-8 TPU path" is the TFLite
artifact placed on the Pixel 8's TPU as its NNAPI delegate partitions it (what the search ranks int8 candidates on
there, ``search.latency``), with the number of TPU partitions. The TFLite search runs once per device
(``--device pixel-8`` and ``--device raspberry-pi-5``; candidates are ranked by the simulated latency on that
device), so the two "searched" rows show whether the devices lead to different recipes. Search time is the
search's own wall time (conversions, verification and simulation of every candidate); it is noisy on a shared
machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
TARGETS = (("tflite", ("pixel-8", "raspberry-pi-5"), "int8"), ("coreml", ("iphone-15-pro",), "w8a8"))
COLUMNS = ("pixel-8", "raspberry-pi-5", "iphone-15-pro")
# Devices each target's artifacts are simulated on (iphone-15-pro's LiteRT too: its GPU delegate and CPU)
SIMULATED = {"tflite": COLUMNS, "coreml": ("iphone-15-pro",)}


@dataclass(frozen=True)
class Case:
    """One model: its path, data (None: seeded random inputs), calibration and the budget to search for."""

    name: str
    path: Path
    data: Path | None
    calibration: str
    samples: int
    max_accuracy_drop: float | None
    min_sqnr_db: float | None


def _outlier(work: Path) -> Path:
    spec = importlib.util.spec_from_file_location("outlier_cnn", SAMPLES / "outlier_cnn.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path, _ = module.make_outlier_model(work / "digits_outlier.keras")
    return Path(path)


def _mobilenet(work: Path) -> Path:
    import keras
    import numpy as np

    keras.utils.set_random_seed(7)
    model = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None, classes=10,
                                           classifier_activation=None)
    # With weights=None every activation shrinks layer after layer (features ~1e-10: fp16 flushes them to zero and
    # any metric is meaningless). One pass in training mode with momentum 0 sets each BatchNorm's statistics to
    # those of 32 seeded random images, which keeps activations near unit scale; the weights stay random.
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(np.random.default_rng(7).uniform(0, 1, (32, 64, 64, 3)).astype("float32"), training=True)
    for layer in norms:
        layer.momentum = 0.99
    path = work / "mobilenet_v2_035.keras"
    model.save(path)
    return path


def cases(work: Path, names: list[str]) -> list[Case]:
    data = SAMPLES / "digits.npz"
    built = []
    if "outlier" in names:
        built.append(Case("outlier", _outlier(work), data, str(data), 360, 1.0, None))
    if "digits" in names:
        built.append(Case("digits", SAMPLES / "digits_cnn.keras", data, str(data), 360, 1.0, None))
    if "mobilenet" in names:
        built.append(Case("mobilenet", _mobilenet(work), None, "synthetic", 32, None, 20.0))
    return built


def _row(case: Case, target: str, device: str, preset: str, label: str, out: Path, search: Any = None) -> list[str]:
    from edgeexport.api import ConvertOptions, VerifyOptions, convert

    options = ConvertOptions(targets=(target,), preset=preset, device=device, calibration=case.calibration,
                             verify=VerifyOptions(data=case.data, samples=case.samples), write_report=False,
                             precision_search=search)
    started = time.perf_counter()
    report = convert(case.path, out, options)
    seconds = time.perf_counter() - started
    (entry,) = report.artifacts
    (output,) = entry.verification.outputs
    metrics = output.metrics
    if case.max_accuracy_drop is not None:
        quality = f"{metrics.classifier.accuracy_drop_points:+.2f} pts"
    else:
        quality = f"{metrics.sqnr_db:.1f} dB"
    from edgeexport import load_device
    from edgeexport.simulate import simulate

    artifact = out / entry.artifact.path.name
    latency = {name: f"{float(simulate(artifact, load_device(name)).p50_ms):.3f}" for name in SIMULATED[target]}
    npu = "-"
    if target == "tflite":
        # where the search ranks int8 candidates on a Pixel 8: its TPU through NNAPI, as the delegate partitions
        from edgeexport.catalog import load_preset
        from edgeexport.search.latency import deployment, place_candidate

        pixel = load_device("pixel-8")
        placed = place_candidate(artifact, pixel, deployment(pixel, "tflite", load_preset("int8")))
        npu = f"{placed.p50_ms:.3f} ({placed.accelerator_partitions} part.)"
    found = entry.search
    floats = "0" if found is None else f"{len(found.chosen.layers)}" + (f" ({', '.join(found.chosen.layers)})"
                                                                         if found.chosen.layers else "")
    base = entry.artifact.preset if found is None else found.chosen.base
    search_time = "-" if found is None else f"{found.seconds:.0f} s / {found.candidates} cand."
    verdict = "pass" if entry.verification.passed else "FAIL"
    return [case.name, target, label, base, quality, verdict, floats, f"{entry.artifact.size_bytes / 1024:.1f} KiB",
            *(latency.get(name, "-") for name in COLUMNS), npu, search_time, f"{seconds:.0f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["outlier", "digits", "mobilenet"])
    parser.add_argument("--targets", nargs="+", default=["tflite", "coreml"], choices=["tflite", "coreml"])
    parser.add_argument("--timeout", type=float, default=600.0, help="search time limit per artifact, seconds")
    args = parser.parse_args(argv)
    from edgeexport.errors import EdgeExportError
    from edgeexport.search import PrecisionSearch

    header = ["model", "target", "recipe", "base", "quality", "check", "float layers", "size",
              *(f"{name} ms" for name in COLUMNS), "pixel-8 TPU path ms", "search", "total s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in cases(work, args.models):
            search = PrecisionSearch(max_accuracy_drop=case.max_accuracy_drop, min_sqnr_db=case.min_sqnr_db,
                                     timeout_s=args.timeout)
            for target, devices, quantized in (t for t in TARGETS if t[0] in args.targets):
                runs = [("fp16", "fp16", None, devices[0]), (f"plain {quantized}", quantized, None, devices[0])]
                runs += [(f"searched for {device}", quantized, search, device) for device in devices]
                for label, preset, budget, device in runs:
                    out = work / f"{case.name}-{target}-{label.replace(' ', '-')}"
                    try:
                        row = _row(case, target, device, preset, label, out, budget)
                    except EdgeExportError as err:  # a row that cannot be built says why, the others still run
                        row = [case.name, target, label, preset, f"exit {err.exit_code}: {err.one_line()[:90]}"]
                        row += ["-"] * (len(header) - len(row))
                    print("| " + " | ".join(row) + " |", flush=True)
    print(f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
