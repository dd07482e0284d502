"""Why the random-weight MobileNetV2 of ``mixed_precision.py`` cannot reach 20 dB SQNR in int8 (issue 13).

Usage (from the repo root; one heavy process, a few minutes):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/mobilenet_noise.py [--steps 80]

Two keras.applications MobileNetV2 (alpha 0.35, 64x64, 10 logits): the random-weight one of ``mixed_precision.py``
(BatchNorm statistics from 32 random images) and the same architecture trained for ``--steps`` Adam steps (batch
32) on scikit-learn's digits scaled to 64x64 RGB. For each, on 32 inputs (digits test images scaled the same way,
and seeded uniform [0, 1) images as ``mixed_precision.py`` verifies on), it prints the output SQNR (dB, logits
against the float model) of:

* ``noise 40 dB``: Gaussian noise at 40 dB SQNR added to the input only, run in Keras (no converter): 40 minus
  this is how many dB the network amplifies a perturbation;
* ``input int8``: the input alone rounded to 256 levels over [0, 1] (what an int8 model's first QUANTIZE does);
* ``fp16 weights``: every weight cast to float16 and back, Keras float compute;
* ``tflite fp16`` and ``tflite int8``: the real artifacts through ``edgeexport convert`` (calibrated on 64
  images of the same kind), verified on the digits images.

A network that amplifies noise by ~30 dB turns any rounding the int8 artifact keeps (its input quantization, the
residual ADDs, which no override can keep in float) into an output SQNR far below 20 dB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def sqnr_db(ref: np.ndarray[Any, Any], out: np.ndarray[Any, Any]) -> float:
    """10 log10(sum ref^2 / sum (ref - out)^2) over all samples and logits, in dB."""
    noise = float(np.sum((ref.astype(np.float64) - out) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def digits64() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """scikit-learn's digits (1797) as 64x64x3 float32 in [0, 1] (each pixel an 8x8 block), and the labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype("float32")
    big = np.kron(images, np.ones((8, 8), dtype="float32"))[..., None].repeat(3, axis=-1)
    return big, data.target.astype("int64")


def measure(model: Any, images: np.ndarray[Any, Any]) -> dict[str, float]:
    """The Keras-only rows (see the module docstring) for ``model`` on ``images``."""
    ref = model.predict(images, verbose=0)
    rng = np.random.default_rng(1)
    power = float(np.mean(images.astype(np.float64) ** 2))
    noisy = images + rng.normal(0, np.sqrt(power / 1e4), images.shape).astype("float32")  # 40 dB input SQNR
    rounded = np.round(np.clip(images, 0, 1) * 255) / 255
    weights = model.get_weights()
    model.set_weights([w.astype(np.float16).astype(w.dtype) for w in weights])
    half = model.predict(images, verbose=0)
    model.set_weights(weights)
    return {"noise 40 dB": sqnr_db(ref, model.predict(noisy, verbose=0)),
            "input int8": sqnr_db(ref, model.predict(rounded.astype("float32"), verbose=0)),
            "fp16 weights": sqnr_db(ref, half)}


def converted(path: Path, data: Path, work: Path) -> dict[str, float]:
    """SQNR (dB) of the real TFLite fp16 and int8 artifacts of ``path``, verified on ``data``'s test split."""
    from edgeexport.api import ConvertOptions, VerifyOptions, convert

    out = {}
    for preset in ("fp16", "int8"):
        options = ConvertOptions(targets=("tflite",), preset=preset, calibration=str(data),
                                 verify=VerifyOptions(data=data, samples=32), write_report=False)
        report = convert(path, work / f"{path.stem}-{preset}", options)
        (entry,) = report.artifacts
        (output,) = entry.verification.outputs
        out[f"tflite {preset}"] = float(output.metrics.sqnr_db)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80, help="training steps of the trained model")
    args = parser.parse_args(argv)
    import keras
    from mixed_precision import _mobilenet

    images, labels = digits64()
    test, uniform = images[-32:], np.random.default_rng(7).uniform(0, 1, (32, 64, 64, 3)).astype("float32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        random_path = _mobilenet(work)
        trained = keras.models.load_model(random_path)
        trained.compile(optimizer=keras.optimizers.Adam(1e-3),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        rng = np.random.default_rng(3)
        train = np.arange(len(images) - 360)
        for _ in range(args.steps):
            batch = rng.choice(train, 32, replace=False)
            trained.train_on_batch(images[batch], labels[batch])
        held = images[-360:]
        accuracy = float(np.mean(np.argmax(trained.predict(held, verbose=0), axis=1) == labels[-360:]))
        trained_path = work / "mobilenet_v2_035_trained.keras"
        trained.save(trained_path)
        name = trained.inputs[0].name
        data = work / "digits64.npz"
        np.savez(data, **{f"test__{name}": test, f"calibration__{name}": images[:64]})
        for label, path in (("random weights", random_path), (f"trained {args.steps} steps", trained_path)):
            model = keras.models.load_model(path)
            on_digits, on_uniform = measure(model, test), measure(model, uniform)
            rows.append((label, on_digits, on_uniform, converted(path, data, work)))
    print(f"trained model: {accuracy:.1%} accuracy on the 360 held-out digits after {args.steps} steps\n")
    print("| model | inputs | noise 40 dB | amplification | input int8 | fp16 weights | tflite fp16 | tflite int8 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, on_digits, on_uniform, real in rows:
        for kind, row in (("digits 64x64", on_digits), ("uniform [0,1)", on_uniform)):
            tail = (f"{real['tflite fp16']:.1f} | {real['tflite int8']:.1f}" if kind.startswith("digits")
                    else "- | -")
            print(f"| {label} | {kind} | {row['noise 40 dB']:.1f} | {40 - row['noise 40 dB']:.1f} | "
                  f"{row['input int8']:.1f} | {row['fp16 weights']:.1f} | {tail} |")
    print(f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
