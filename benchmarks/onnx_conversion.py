"""ONNX conversion time and accuracy for a MobileNetV2-sized ONNX graph, measured in one run.

    .venv/bin/python benchmarks/onnx_conversion.py [--size 224] [--samples 4]

The graph is MobileNetV2 1.0 built with onnx.helper (sample_models/make_onnx_samples.py: random He weights,
BatchNormalization kept as nodes, opset 17; no download). Stages timed separately: loading and checking the ONNX
file, onnx2tf's ONNX -> TensorFlow conversion plus writing the fixed-shape SavedModel, then each target conversion.
Every artifact runs on the same seeded inputs as onnxruntime (CPU) with the recorded permutations applied;
errors are max abs error, max abs error relative to max |reference| and cosine similarity of the logits.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample_models"))
CASES = (("tflite", "fp32"), ("tflite", "int8"), ("coreml", "fp32"), ("coreml", "fp16"))


def _to_artifact(arrays: dict[str, np.ndarray], specs: Any, names: tuple[str, ...], exported: Any, kind: str) -> dict[str, np.ndarray]:
    axes = {p.tensor: p.axes for p in exported.permutations if p.kind == kind}
    return {n: np.ascontiguousarray(arrays[s.name].transpose(axes[s.name])) if s.name in axes else arrays[s.name]
            for s, n in zip(specs, names)}


def _runner(path: Path, target: str) -> Any:
    if target == "tflite":
        from edgeexport.runtimes.tflite import TfliteRunner

        return TfliteRunner(path)
    from edgeexport.runtimes.coreml import CoremlRunner

    return CoremlRunner(path, runtime="mil")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--samples", type=int, default=4, help="inputs compared against onnxruntime (default 4)")
    parser.add_argument("--calibration-samples", type=int, default=16, help="random int8 calibration inputs (default 16)")
    args = parser.parse_args()
    import make_onnx_samples as samples
    import onnx

    from edgeexport.catalog import load_preset
    from edgeexport.sources import load, open_source

    print(f"command: python benchmarks/onnx_conversion.py --size {args.size} --samples {args.samples}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "mobilenet_v2.onnx"
        onnx.save(samples.build_mobilenet_v2(args.size), path)
        started = time.perf_counter()
        model = load(open_source(path))
        summary = model.summary
        print(f"model: {path.name} {path.stat().st_size / 1e6:.1f} MB, {summary.params:,} params, "
              f"{summary.macs / 1e6:.0f} M MACs, {summary.op_count} ONNX nodes")
        print(f"load + check + summary: {time.perf_counter() - started:.2f} s")
        from edgeexport.sources.tfgraph import quiet_tensorflow

        started = time.perf_counter()
        quiet_tensorflow()
        print(f"import TensorFlow: {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        exported = model.export_saved_model(work / "savedmodel")
        print(f"onnx2tf + fixed-shape SavedModel: {time.perf_counter() - started:.2f} s")
        rng = np.random.default_rng(0)
        spec = summary.inputs[0]
        feeds = {spec.name: rng.uniform(0, 1, (args.samples, *spec.shape[1:])).astype(np.float32)}
        calibration = {spec.name: rng.uniform(0, 1, (args.calibration_samples, *spec.shape[1:])).astype(np.float32)}
        started = time.perf_counter()
        reference = model.run(feeds)
        print(f"onnxruntime reference, {args.samples} samples: {time.perf_counter() - started:.2f} s")
        print(f"{'target':7} {'preset':6} {'convert s':>9} {'size MB':>8} {'max abs err':>12} {'rel err':>9} {'cosine':>9}")
        for target, preset_name in CASES:
            preset = load_preset(preset_name)
            out = work / f"m.{preset_name}.{'tflite' if target == 'tflite' else 'mlpackage'}"
            cal = None
            if preset.quantization.requires_calibration:
                cal = _to_artifact(calibration, summary.inputs, exported.input_names, exported, "input")
            begun = time.perf_counter()
            importlib.import_module(f"edgeexport.targets.{target}").convert(exported, preset, out, calibration=cal)
            seconds = time.perf_counter() - begun
            size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) if out.is_dir() else out.stat().st_size
            runner = _runner(out, target)
            ins = _to_artifact(feeds, summary.inputs, exported.input_names, exported, "input")
            expected = _to_artifact(reference, summary.outputs, exported.output_names, exported, "output")
            name = exported.output_names[0]
            got = np.concatenate([np.asarray(runner.run({k: v[i : i + 1] for k, v in ins.items()})[name], np.float32)
                                  .reshape(1, -1) for i in range(args.samples)])
            ref = expected[name].reshape(args.samples, -1)
            err = float(np.abs(got - ref).max())
            cosine = float((got.ravel() @ ref.ravel()) / (np.linalg.norm(got) * np.linalg.norm(ref)))
            print(f"{target:7} {preset_name:6} {seconds:9.2f} {size / 1e6:8.2f} {err:12.3g} "
                  f"{err / float(np.abs(ref).max()):9.3g} {cosine:9.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
