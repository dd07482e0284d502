"""Artifacts of standard architectures that edgeexport builds and converts itself, cached on disk.

A measurement row may name a model as a keras.applications architecture (``MobileNet``, ``ResNet50``, ...,
plus ``ResNet18``, built here because keras.applications lacks it) with an input size, keyword options
(``alpha=0.5``) and a preset. ``artifact_for`` builds it with ``weights=None`` (nothing is downloaded; random
weights do not change the time of dense kernels), converts it with ``edgeexport convert`` (no verification,
int8 calibrated on a few seeded random samples) and caches the artifact under ``cache_dir()`` so refits are
fast. Converting is the expensive part: each conversion runs in its own ``nice``'d subprocess, one at a time.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeexport.errors import DataError
from edgeexport.targets.base import TFLITE, suffix_of

# Calibration samples for int8 conversions: enough for the converter to place quantization ranges; the
# timing of an int8 kernel does not depend on them.
CALIBRATION_SAMPLES = 4
# A conversion that takes longer than this (seconds) is abandoned (NASNetLarge-size models take minutes).
CONVERT_TIMEOUT_S = 1200


@dataclass(frozen=True)
class ModelSpec:
    """A standard architecture at one input size, keras keyword options and preset, for one target."""

    arch: str
    size: int
    preset: str
    options: tuple[tuple[str, str], ...] = ()
    target: str = TFLITE

    @property
    def key(self) -> str:
        opts = "".join(f"_{k}{v}" for k, v in self.options)
        return f"{self.arch}{opts}_{self.size}.{self.preset}"

    @property
    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.arch}{'(' + opts + ')' if opts else ''}@{self.size}"


def parse_options(text: str) -> tuple[tuple[str, str], ...]:
    """``"alpha=0.5;foo=1"`` -> sorted pairs (empty text -> ())."""
    pairs = []
    for part in text.replace(",", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise DataError(f"model option {part!r} is not KEY=VALUE")
        pairs.append((key.strip(), value.strip()))
    return tuple(sorted(pairs))


def cache_dir() -> Path:
    """``$EDGEEXPORT_FIT_CACHE``, else ``build/fit-artifacts`` under the current directory (gitignored)."""
    return Path(os.environ.get("EDGEEXPORT_FIT_CACHE") or Path.cwd() / "build" / "fit-artifacts")


def artifact_path(spec: ModelSpec, cache: Path | None = None) -> Path:
    """Where the converted artifact of ``spec`` lives in the cache (it may not exist yet)."""
    suffix = suffix_of(spec.target)
    return (cache or cache_dir()) / f"{spec.key}{suffix}"


def artifact_for(spec: ModelSpec, cache: Path | None = None, *, build: bool = True) -> Path | None:
    """The cached artifact of ``spec``; converted first (in a subprocess) when missing and ``build`` is set.
    Returns None when it is missing and ``build`` is False; raises DataError when conversion fails."""
    path = artifact_path(spec, cache)
    if path.exists():
        return path
    if not build:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "edgeexport.simulate.zoo", spec.arch, str(spec.size), spec.preset, spec.target,
            ";".join(f"{k}={v}" for k, v in spec.options), str(path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run(["nice", "-n", "10", *args], env=env, capture_output=True, text=True,
                              timeout=CONVERT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise DataError(f"converting {spec.label} {spec.preset} took over {CONVERT_TIMEOUT_S} s") from err
    if done.returncode != 0 or not path.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"converting {spec.label} {spec.preset} failed: {tail[0]}")
    return path


def build_model(arch: str, size: int, options: tuple[tuple[str, str], ...]) -> object:
    """The keras model (random weights, 1000 classes, batch 1)."""
    import keras

    kwargs: dict[str, object] = {k: _number(v) for k, v in options}
    if arch == "ResNet18":
        return _resnet18(size)
    cls = getattr(keras.applications, arch, None)
    if cls is None:
        raise DataError(f"{arch!r} is not a keras.applications architecture")
    model = cls(input_shape=(size, size, 3), weights=None, **kwargs)
    inputs = keras.Input(batch_shape=(1, size, size, 3))
    return keras.Model(inputs, model(inputs))


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _resnet18(size: int) -> object:
    """ResNet-18 (He et al. 2016, basic blocks [2, 2, 2, 2]) in Keras, the torchvision layout."""
    import keras

    L = keras.layers

    def block(x: object, filters: int, stride: int) -> object:
        shortcut = x
        y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        if stride != 1 or int(shortcut.shape[-1]) != filters:  # type: ignore[attr-defined]
            shortcut = L.BatchNormalization()(L.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut))
        return L.ReLU()(L.Add()([y, shortcut]))

    inputs = keras.Input(batch_shape=(1, size, size, 3))
    x = L.ZeroPadding2D(3)(inputs)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 7, strides=2, use_bias=False)(x)))
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    for filters, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x = block(block(x, filters, stride), filters, 1)
    x = L.Dense(1000, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, x, name="resnet18")


def _convert_main(argv: list[str]) -> int:
    """Subprocess entry: build, save as .keras, ``edgeexport convert`` without verification, move into place."""
    import shutil
    import tempfile

    import numpy as np

    arch, size, preset, target, options, out = argv[0], int(argv[1]), argv[2], argv[3], argv[4], Path(argv[5])
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(arch, size, parse_options(options))
    from edgeexport.api import ConvertOptions, VerifyOptions, convert, inspect

    with tempfile.TemporaryDirectory(prefix="edgeexport-zoo-") as tmp:
        source = Path(tmp) / f"{hashlib.sha1(out.name.encode()).hexdigest()[:8]}.keras"
        model.save(source)  # type: ignore[attr-defined]
        keras.backend.clear_session()
        calibration = None
        if "int8" in preset:
            names = [t.name for t in inspect(source).summary.inputs]
            rng = np.random.default_rng(0)
            calibration = Path(tmp) / "calibration.npz"
            arrays = {n: rng.standard_normal((CALIBRATION_SAMPLES, size, size, 3)).astype(np.float32) for n in names}
            np.savez(calibration, **arrays)  # type: ignore[arg-type]
        convert(source, Path(tmp) / "out", ConvertOptions(targets=(target,), preset=preset, calibration=calibration,
                                                          write_report=False, verify=VerifyOptions(enabled=False)))
        suffix = suffix_of(target)
        produced = [p for p in (Path(tmp) / "out").iterdir() if p.name.endswith(suffix)]
        if not produced:
            print(f"no {suffix} artifact produced", file=sys.stderr)
            return 1
        partial = out.with_name(out.name + ".partial")
        shutil.move(str(produced[0]), partial)
        partial.rename(out)
    return 0


if __name__ == "__main__":
    sys.exit(_convert_main(sys.argv[1:]))
