"""How long ``verify`` takes for 256 samples, and its overhead over running the two models bare, in one run.

    .venv/bin/python benchmarks/verify_speed.py [--samples 256] [--size 96] [--mobilenet-only] [--one-per-call]

Models: the digits CNN (fp32 TFLite, and fp32 Core ML through the numpy MIL executor) with digits.npz, and a
MobileNetV2 (keras.applications, weights=None, input SIZE x SIZE x 3, fp32 TFLite) with seeded inputs.
"bare" is the reference model's ``run`` plus the artifact runner's ``run`` on the same feeds (interpreter
already loaded); "verify" is the whole ``verify_artifact`` call (data loading, runner creation, both runs,
metrics). ``--one-per-call`` adds a MobileNetV2 row with the reference run one sample per call (the rule
before the byte budget, issue 17) next to the default chunking. Each figure is the fastest of 3 timed calls after one untimed warm-up call of the same size; timings on a shared machine are noisy,
so compare the ratio, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPEATS = 3
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _best(call: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest of ``repeats`` timed calls, in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        begun = time.perf_counter()
        call()
        times.append(time.perf_counter() - begun)
    return min(times)


def _measure(label: str, model_path: Path, artifact_path: Path, data: Path | None, samples: int) -> str:
    from edgeexport.sources import load, open_source
    from edgeexport.verify.inputs import load_npz, seeded_inputs
    from edgeexport.verify.stage import (
        artifact_from_path,
        open_artifact,
        preset_tolerance,
        run_artifact,
        run_reference,
        verify_artifact,
    )

    model = load(open_source(model_path))
    artifact = artifact_from_path(artifact_path)
    # Warm-up at the same sample count: Keras traces once per batch shape, the first call also imports.
    tolerance, source = preset_tolerance(artifact.preset)
    verify_artifact(artifact, model, data=data, samples=samples, tolerance=tolerance, tolerance_source=source)
    specs = model.summary.inputs
    dataset = load_npz(data, specs, split="test").head(samples) if data else seeded_inputs(specs, samples)
    runner = open_artifact(artifact.path)
    feeds = dataset.arrays
    reference_s = _best(lambda: run_reference(model, feeds))
    artifact_s = _best(lambda: run_artifact(runner, feeds))
    holder: list[Any] = []
    verify_s = _best(lambda: holder.append(verify_artifact(artifact, model, data=data, samples=samples,
                                                             tolerance=tolerance, tolerance_source=source)))
    result = holder[-1]
    bare = reference_s + artifact_s
    return (f"{label:34} {result.samples:7d} {reference_s:9.3f} {artifact_s:9.3f} {verify_s:9.3f} "
            f"{verify_s / bare:8.2f}x  {result.headline()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size", type=int, default=96, help="MobileNetV2 input size in pixels (96 or 224)")
    parser.add_argument("--mobilenet-only", action="store_true", help="skip the digits rows")
    parser.add_argument("--one-per-call", action="store_true",
                        help="also time MobileNetV2 with one reference sample per call")
    args = parser.parse_args()
    print("command: python benchmarks/verify_speed.py " + " ".join(sys.argv[1:]))
    import keras

    from edgeexport.api import ConvertOptions, VerifyOptions, convert
    from edgeexport.sources import load, open_source
    from edgeexport.verify import stage

    digits = ROOT / "sample_models" / "digits_cnn.keras"
    data = ROOT / "sample_models" / "digits.npz"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for target in () if args.mobilenet_only else ("tflite", "coreml"):
            convert(digits, out / "digits", ConvertOptions(targets=(target,), verify=VerifyOptions(enabled=False),
                                                           write_report=False))
        mobilenet = keras.applications.MobileNetV2(input_shape=(args.size, args.size, 3), weights=None, classes=1000)
        mobilenet.save(out / "mobilenetv2.keras")
        convert(out / "mobilenetv2.keras", out / "mnv2",
                ConvertOptions(targets=("tflite",), verify=VerifyOptions(enabled=False), write_report=False))
        print(f"{'model':34} {'samples':>7} {'ref s':>9} {'art s':>9} {'verify s':>9} {'overhead':>9}  result")
        if not args.mobilenet_only:
            rows.append(_measure("digits_cnn fp32 tflite", digits, out / "digits" / "digits_cnn.fp32.tflite", data,
                                 args.samples))
            print(rows[-1])
            rows.append(_measure("digits_cnn fp32 coreml (MIL executor)", digits,
                                 out / "digits" / "digits_cnn.fp32.mlpackage", data, args.samples))
            print(rows[-1])
        default = stage.reference_chunk(args.size**2 * 12, load(open_source(out / "mobilenetv2.keras")).activation_bytes())
        budgets = [("1 sample/call", 1)] if args.one_per_call else []  # a budget of 1 byte: one sample per call
        budgets.append((f"{default} samples/call", stage.REFERENCE_CHUNK_BYTES))
        for label, budget in budgets:
            stage.REFERENCE_CHUNK_BYTES = budget
            rows.append(_measure(f"mobilenetv2 {args.size} fp32 tflite ({label})", out / "mobilenetv2.keras",
                                 out / "mnv2" / "mobilenetv2.fp32.tflite", None, args.samples))
            print(rows[-1], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
