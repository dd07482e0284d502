"""Conversion time, size and gzip size of the digits sample per target and preset, measured in one run.

    .venv/bin/python benchmarks/conversion.py [--model sample_models/digits_cnn.keras]

Each conversion goes through the public API (the same path as `edgeexport convert`), in one process, so the
first row also pays for importing TensorFlow and is listed separately.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = (
    ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "dynamic-int8"), ("tflite", "int8"),
    ("coreml", "fp32"), ("coreml", "fp16"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "sample_models" / "digits_cnn.keras")
    parser.add_argument("--calibration", type=Path, default=ROOT / "sample_models" / "digits.npz")
    args = parser.parse_args()
    started = time.perf_counter()
    from edgeexport.api import ConvertOptions, VerifyOptions, convert

    print(f"command: python benchmarks/conversion.py --model {args.model.relative_to(ROOT)}")
    print(f"import edgeexport.api (TensorFlow on first conversion): {time.perf_counter() - started:.2f} s")
    print(f"{'target':7} {'preset':13} {'convert s':>9} {'total s':>8} {'size':>9} {'gzip':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for index, (target, preset) in enumerate(CASES):
            begun = time.perf_counter()
            calibration = Path(args.calibration) if preset == "int8" and args.calibration else None
            report = convert(args.model, Path(tmp) / f"{index}",
                             ConvertOptions(targets=(target,), preset=preset, calibration=calibration,
                                            verify=VerifyOptions(enabled=False)))
            total = time.perf_counter() - begun
            artifact = report.artifacts[0].artifact
            print(f"{target:7} {preset:13} {artifact.conversion_seconds:9.2f} {total:8.2f} "
                  f"{artifact.size_bytes:9d} {artifact.gzip_bytes:9d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
