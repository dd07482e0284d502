"""Every preset on the digits sample and on a MobileNetV2-sized model: size, gzip size, host latency and quality.

    .venv/bin/python benchmarks/presets.py [--model digits|mobilenetv2|mlp|both] [--runs 30] [--only fp32,lowrank-50,...]

- digits: sample_models/digits_cnn.keras, calibrated and scored on digits.npz (test accuracy, 360 images).
- mlp (not part of "both"): a Dense-heavy MLP trained here on the digits (see ``dense_mlp``), where low-rank
  presets remove most of the MACs.
- mobilenetv2: keras.applications.MobileNetV2(weights=None, 224x224, alpha 1.0: 3.5 M params). Its BatchNorm
  statistics are set from a random batch so that activations have a realistic range (untrained MobileNetV2
  otherwise produces logits near zero); scored as cosine and top-1 agreement against the Keras model on 32 seeded
  inputs, since random weights have no accuracy. Pruning presets distil for only 3 epochs here, to bound time.

Latency: LiteRT interpreter on this machine, p50 over --runs runs, 2 threads (Core ML cannot run here; its
column shows the MIL executor's time, which is not a device latency). All rows of one model come from one run.
MACs: multiply-accumulates per inference counted by the simulator from the artifact's own op graph (so every row
counts the same way). "pixel-8" and "rpi-5": the simulator's p50 for the .tflite on those profiles.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TFLITE_PRESETS = ("fp32", "fp16", "dynamic-int8", "int8", "int8-io", "int16x8", "prune-50", "prune-2:4",
                  "prune-channels-25", "prune-50+int8", "lowrank-50", "lowrank-25", "lowrank-energy-95",
                  "lowrank-50+int8")
COREML_PRESETS = ("fp32", "fp16", "w8", "palettize-6", "palettize-4", "w8a8", "prune-50", "prune-50+palettize-4",
                  "lowrank-50", "lowrank-25", "lowrank-energy-95")
SIMULATED = ("pixel-8", "raspberry-pi-5")


def mobilenet_v2(work: Path) -> tuple[Path, Path]:
    """A MobileNetV2 .keras file with BatchNorm statistics from random data, and an .npz of calibration/test inputs."""
    import keras

    keras.utils.set_random_seed(0)
    # Logits, not softmax: a random model's 1,000-way softmax is nearly uniform (~0.001 each), which int8 output
    # quantization (steps of 1/256) flattens to zeros; logits keep the comparison meaningful.
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    rng = np.random.default_rng(0)
    batch = rng.uniform(-1, 1, size=(8, 224, 224, 3)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            probe = keras.Model(model.inputs, layer.input)
            activations = probe.predict(batch, verbose=0)
            axes = tuple(range(activations.ndim - 1))
            layer.moving_mean.assign(activations.mean(axis=axes))
            layer.moving_variance.assign(activations.var(axis=axes) + 1e-3)
    path = work / "mobilenetv2.keras"
    model.save(path)
    data = work / "mobilenetv2.npz"
    np.savez(data, calibration__input_layer=rng.uniform(-1, 1, size=(32, 224, 224, 3)).astype(np.float32),
             test__input_layer=rng.uniform(-1, 1, size=(32, 224, 224, 3)).astype(np.float32))
    return path, data


def dense_mlp(work: Path, width: int = 1024) -> tuple[Path, Path]:
    """A Dense-heavy MLP (64 -> width -> width -> 10, 1.1 M params at 1024) on flattened digits, trained for 60 epochs
    on the 300 calibration images with the digits CNN's answers as labels, and an .npz with calibration/test splits
    (the test split keeps the real labels)."""
    import keras

    with np.load(ROOT / "sample_models" / "digits.npz") as data:
        calib, test, labels = data["calibration__image"], data["test__image"], data["test__labels"]
    teacher = keras.saving.load_model(ROOT / "sample_models" / "digits_cnn.keras", compile=False)
    pseudo = np.argmax(teacher.predict(calib, verbose=0), axis=1)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), name="pixels")
    h = keras.layers.Dense(width, activation="relu", name="fc1")(inputs)
    h = keras.layers.Dense(width, activation="relu", name="fc2")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(h), name="mlp")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(calib.reshape(-1, 64), pseudo, epochs=60, batch_size=32, shuffle=False, verbose=0)
    path = work / "dense_mlp.keras"
    model.save(path)
    npz = work / "dense_mlp.npz"
    np.savez(npz, calibration__pixels=calib.reshape(-1, 64), test__pixels=test.reshape(-1, 64), test__labels=labels)
    return path, npz


def run(model: Path, data: Path, work: Path, runs: int, finetune_epochs: int, only: tuple[str, ...] = ()) -> None:
    from edgeexport.api import ConvertOptions, VerifyOptions, convert, simulate
    from edgeexport.simulate.bench import bench

    print(f"{'target':7} {'preset':22} {'size':>10} {'gzip':>10} {'MACs':>10} {'p50 ms':>8} {'pixel-8':>8} "
          f"{'rpi-5':>8} {'quality':>28} {'convert s':>9}")
    for target, presets in (("tflite", TFLITE_PRESETS), ("coreml", COREML_PRESETS)):
        for preset in presets:
            if only and preset not in only:
                continue
            out = work / f"{target}-{preset.replace(':', '-')}"
            begun = time.perf_counter()
            try:
                checks = VerifyOptions(data=data, samples=360 if "mobilenet" not in model.name else 32)
                report = convert(model, out, ConvertOptions(targets=(target,), preset=preset, calibration=data,
                                                            verify=checks, finetune_epochs=finetune_epochs))
            except Exception as err:  # noqa: BLE001 - a benchmark row records the failure and goes on
                print(f"{target:7} {preset:22} failed: {err}")
                continue
            entry = report.artifacts[0]
            artifact = entry.artifact
            if target == "tflite":
                latency = f"{bench(artifact.path, threads=2, runs=runs).p50_ms:8.3f}"
                estimates = [simulate(artifact.path, device) for device in SIMULATED]
                simulated = " ".join(f"{e.p50_ms:8.3f}" for e in estimates)
                macs = estimates[0].macs
            else:
                latency = f"{'(mil)':>8}"
                simulated = " ".join(f"{'-':>8}" for _ in SIMULATED)  # these devices run no Core ML
                macs = simulate(artifact.path, "iphone-15-pro").macs
            print(f"{target:7} {preset:22} {artifact.size_bytes:10,d} {artifact.gzip_bytes:10,d} {macs:10,d} "
                  f"{latency} {simulated} {_quality(entry.verification):>28} {time.perf_counter() - begun:9.1f}")


def _quality(verification: object) -> str:
    if verification is None:
        return "-"
    data = verification.to_dict()  # type: ignore[attr-defined]
    metrics = (data["outputs"][0].get("metrics") or {})
    classifier = metrics.get("classifier") or {}
    if classifier.get("artifact_accuracy") is not None:
        return (f"acc {classifier['artifact_accuracy']:.4f} (ref {classifier['reference_accuracy']:.4f})"
                + ("" if data["passed"] else " FAIL"))
    return f"cos {metrics.get('cosine', float('nan')):.5f} top1 {classifier.get('top1_agreement', float('nan')):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "mobilenetv2", "mlp", "both"), default="both")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--only", default="", help="comma-separated preset names to run (default: all)")
    args = parser.parse_args()
    only = tuple(p for p in args.only.split(",") if p)
    print(f"command: python benchmarks/presets.py --model {args.model} --runs {args.runs}"
          + (f" --only {args.only}" if only else ""))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model in ("digits", "both"):
            print("\n# digits_cnn.keras (8,506 params), scored on digits.npz test split")
            run(ROOT / "sample_models" / "digits_cnn.keras", ROOT / "sample_models" / "digits.npz", work / "d",
                args.runs, finetune_epochs=30, only=only)
        if args.model == "mlp":
            print("\n# Dense-heavy MLP 64-1024-1024-10 (1.1 M params), scored on digits.npz test split")
            work.joinpath("p").mkdir()
            model, data = dense_mlp(work / "p")
            run(model, data, work / "p", args.runs, finetune_epochs=30, only=only)
        if args.model in ("mobilenetv2", "both"):
            print("\n# MobileNetV2 224x224 weights=None (3.5 M params), scored against Keras on 32 seeded inputs")
            model, data = mobilenet_v2(work)
            run(model, data, work / "m", args.runs, finetune_epochs=3, only=only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
