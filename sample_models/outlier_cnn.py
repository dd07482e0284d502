"""The digits CNN with one conv1 output channel of a large range: a model that plain int8 quantization breaks.

Real models often have one channel whose activations are far larger than the rest; a per-tensor activation
scale sized for that channel leaves the others a handful of quantization levels. We inject such a channel into the
trained ``digits_cnn.keras`` without changing what the model computes: conv1's most active filter (kernel and bias)
is multiplied by ``FACTOR`` and conv2's input weights for that channel divided by it. ReLU is positively
homogeneous, so the float model's outputs stay the same up to rounding (its accuracy stays 97.5 % on the test
split); only quantization sees the difference. Deterministic and instant (no training). Run from the repository
root to write ``build/digits_outlier.keras``:

    .venv/bin/python sample_models/outlier_cnn.py [OUT.keras]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FACTOR = 300.0
SOURCE = HERE / "digits_cnn.keras"


def make_outlier_model(out_path: Path, *, factor: float = FACTOR, source: Path = SOURCE) -> tuple[Path, int]:
    """Write the outlier variant of ``source`` to ``out_path``; return the path and the scaled conv1 channel.

    The channel is conv1's most active one on the calibration split of ``digits.npz`` (mean ReLU output), so the
    choice is deterministic and never a dead channel."""
    import keras

    model = keras.models.load_model(source)
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    kernel1, bias1 = (np.array(w) for w in conv1.get_weights())
    kernel2, bias2 = (np.array(w) for w in conv2.get_weights())
    images = np.load(HERE / "digits.npz")["calibration__image"]
    probe = keras.Model(model.inputs, conv1.output)
    channel = int(np.argmax(np.asarray(probe(images, training=False)).mean(axis=(0, 1, 2))))
    kernel1[..., channel] *= factor
    bias1[channel] *= factor
    kernel2[:, :, channel, :] /= factor
    conv1.set_weights([kernel1, bias1])
    conv2.set_weights([kernel2, bias2])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(out_path)
    return out_path, channel


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build") / "digits_outlier.keras"
    written, scaled = make_outlier_model(target)
    print(f"wrote {written} (conv1 channel {scaled} x{FACTOR:g})")
