"""A small CNN trained on scikit-learn's digits whose first conv has one output channel with a huge range.

Filter 0 of ``conv1`` (kernel and bias) is scaled up by ``scale`` (default ``SCALE``) and ``conv2``'s input weights from that channel
scaled down by the same factor. ReLU is positively homogeneous, so the float model computes exactly what it did
(about 96 % accuracy); a per-tensor int8 scale for conv1's output, set by the large channel, rounds every other
channel of it to a few levels, and plain int8 collapses. Real models grow such channels (activation outliers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCALE = 100.0
SEED = 7


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x, test y): images float32[N, 8, 8, 1] in [0, 1], int64 labels; 360 test samples."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0)[..., None]
    labels = data.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(labels))
    return images[order[360:]], labels[order[360:]], images[order[:360]], labels[order[:360]]


def build_outlier_model(out: Path, *, epochs: int = 40, scale: float = SCALE) -> tuple[Path, Path, float]:
    """Train, inject the outlier, save ``out/outlier_cnn.keras`` and ``out/outlier_digits.npz`` (splits
    ``calibration`` and ``test`` with labels); returns (model path, data path, float test accuracy 0..1)."""
    import keras

    keras.utils.set_random_seed(SEED)
    x, y, tx, ty = digits_arrays()
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs, name="outlier_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., 0] *= scale
    bias[0] *= scale
    model.get_layer("conv1").set_weights([kernel, bias])
    kernel, bias = model.get_layer("conv2").get_weights()
    kernel[:, :, 0, :] /= scale
    model.get_layer("conv2").set_weights([kernel, bias])
    accuracy = float(np.mean(np.argmax(model.predict(tx, verbose=0), axis=1) == ty))
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "outlier_cnn.keras")
    np.savez(out / "outlier_digits.npz", calibration__image=x[:300], test__image=tx, test__labels=ty)
    return out / "outlier_cnn.keras", out / "outlier_digits.npz", accuracy
