"""Refresh the demo apps' bundled assets from the digits sample.

    python sample_models/make_demo_assets.py [--work build/demo-assets] [--only android|ios]

Android: digits_cnn.keras -> int8 .tflite for pixel-8 (its int8 NPU path is the fastest; float I/O, so the app
feeds floats). iOS: fp16 .mlpackage for iphone-15-pro (the Neural Engine runs fp16). Each is converted,
verified on the held-out digits, simulated on its device, bundled with ``scale=0.0625`` preprocessing (the sample
stores raw 0..16 pixel intensities; the model was trained on pixel / 16) and labels 0-9, then copied with a
sample input into the app. The artifacts are tens of KB, so they are committed with the apps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
ANDROID_ASSETS = ROOT / "android_demo" / "app" / "src" / "main" / "assets"
IOS_RESOURCES = ROOT / "ios_demo" / "DigitsDemo.swiftpm" / "Sources" / "DigitsDemo" / "Resources"
SAMPLE_NAME = "sample_input.json"
PREPROCESS = "scale=0.0625"
LABELS = tuple(str(d) for d in range(10))
# Test-split row used as the bundled sample (any row works; the app prints the expected label next to its answer).
SAMPLE_INDEX = 0


@dataclass(frozen=True)
class DemoTarget:
    """One app: the target, preset and device it is built for and where its assets go."""

    app: str
    target: str
    preset: str
    device: str
    assets: Path


DEMOS = (
    DemoTarget("android", "tflite", "int8", "pixel-8", ANDROID_ASSETS),
    DemoTarget("ios", "coreml", "fp16", "iphone-15-pro", IOS_RESOURCES),
)


def sample_input(index: int = SAMPLE_INDEX, input_name: str = "image") -> dict[str, Any]:
    """Row ``index`` of the digits test split as raw 0..16 intensities (the preprocessing undoes this)."""
    import numpy as np

    with np.load(SAMPLES / "digits.npz") as data:
        image = data["test__image"][index]
        label = int(data["test__labels"][index])
    raw = np.rint(image * 16.0).astype(int)
    return {"input": input_name, "shape": [1, *image.shape], "raw": [int(v) for v in raw.ravel()], "label": str(label)}


def build(demo: DemoTarget, work: Path) -> dict[str, Any]:
    """Convert, bundle and copy one demo's assets; returns the manifest written."""
    from edgeexport.api import ConvertOptions, VerifyOptions, add_estimates, convert
    from edgeexport.bundle import ModelInfo, parse_preprocessing, validate, write_bundles
    from edgeexport.report.jsonfile import write_json

    out = work / demo.app
    calibration = SAMPLES / "digits.npz" if demo.preset == "int8" else None
    options = ConvertOptions(targets=(demo.target,), preset=demo.preset, device=demo.device, calibration=calibration,
                             verify=VerifyOptions(data=SAMPLES / "digits.npz"))
    report = add_estimates(convert(SAMPLES / "digits_cnn.keras", out, options), (demo.device,))
    info = ModelInfo(version="1.0.0", description="Handwritten digit classifier (8x8 grey, scikit-learn digits)",
                     author="edgeexport sample", license="BSD-3-Clause", labels=LABELS)
    (bundle,) = write_bundles(out, report, preprocessing=parse_preprocessing(PREPROCESS), info=info)
    sample = sample_input(input_name=bundle.manifest["inputs"][0]["name"])
    errors = validate(sample, definition="sample_input")
    if errors:
        raise ValueError(f"sample input does not match its schema: {errors}")
    _replace_assets(demo.assets, bundle.artifact, bundle.manifest_path)
    write_json(demo.assets / SAMPLE_NAME, sample)
    return bundle.manifest


def _replace_assets(assets: Path, artifact: Path, manifest: Path) -> None:
    assets.mkdir(parents=True, exist_ok=True)
    for old in [*assets.glob("*.tflite"), *assets.glob("*.mlpackage"), assets / "manifest.json"]:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    if artifact.is_dir():
        shutil.copytree(artifact, assets / artifact.name)
    else:
        shutil.copyfile(artifact, assets / artifact.name)
    shutil.copyfile(manifest, assets / "manifest.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python sample_models/make_demo_assets.py",
                                     description="Refresh android_demo/ and ios_demo/ assets from the digits sample.")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "demo-assets", help="scratch output directory")
    parser.add_argument("--only", choices=[d.app for d in DEMOS], default=None, help="refresh one app only")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for demo in DEMOS:
        if args.only in (None, demo.app):
            manifest = build(demo, args.work)
            print(_summary(demo, manifest))
    return 0


def _summary(demo: DemoTarget, manifest: Mapping[str, Any]) -> str:
    latency = manifest["simulated_latency"]
    sim = f", simulated {latency[0]['p50_ms']:.3f} ms on {latency[0]['device']}" if latency else ""
    verified = manifest["verification"]["passed"] if manifest["verification"] else "not run"
    return (f"{demo.app}: {manifest['artifact']['path']} {manifest['artifact']['size_bytes']:,} bytes -> "
            f"{demo.assets.relative_to(ROOT)} (verified: {verified}{sim}); "
            f"{json.dumps([t['preprocessing'] for t in manifest['inputs']])}")


if __name__ == "__main__":
    raise SystemExit(main())
