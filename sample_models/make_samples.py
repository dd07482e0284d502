"""Regenerate every sample model and data file in this directory, deterministically (fixed seeds).

Real data only: scikit-learn's digits set (1,797 8x8 grey images of handwritten digits, shipped inside the
package), so nothing is downloaded. Run from the repository root:

    .venv/bin/python sample_models/make_samples.py

Writes (all small, well under 5 MB together):
    digits_cnn.keras            a small CNN, input ``image`` float32[N,8,8,1] in [0, 1], softmax over 10 digits
    digits_cnn.accuracy.json    its held-out test accuracy
    digits.npz                  calibration__image (300), test__image / test__labels (360 held-out samples)
    digits_labels.txt           the class labels, one per line, for bundle manifests
    digits_mlp.h5               a legacy-format Keras MLP over the 64 flattened pixels
    digits_mlp_savedmodel/      the same MLP as a TensorFlow SavedModel (serving_default signature)
    digits_cnn.pt2              a PyTorch CNN on the same split (make_torch_samples.py; needs edgeexport[torch])
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("PYTHONHASHSEED", "0")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 1234
TEST_COUNT = 360
CALIBRATION_COUNT = 300
EPOCHS = 40


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images scaled to [0, 1] as float32[N, 8, 8, 1] and int64 labels: (train x, train y, test x, test y)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0)[..., None]
    labels = data.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(labels))
    test, train = order[:TEST_COUNT], order[TEST_COUNT:]
    return images[train], labels[train], images[test], labels[test]


def build_cnn() -> object:
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def build_mlp() -> object:
    import keras

    inputs = keras.Input((64,), name="pixels")
    x = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_mlp")


def train(model: object, x: np.ndarray, y: np.ndarray) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=EPOCHS, batch_size=64, shuffle=True, verbose=0)


def accuracy(model: object, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def main() -> int:
    started = time.perf_counter()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x_train, y_train, x_test, y_test = digits_split()

    cnn = build_cnn()
    train(cnn, x_train, y_train)
    cnn_accuracy = accuracy(cnn, x_test, y_test)
    cnn.save(HERE / "digits_cnn.keras")
    (HERE / "digits_cnn.accuracy.json").write_text(
        json.dumps({"model": "digits_cnn.keras", "test_accuracy": round(cnn_accuracy, 4), "test_samples": TEST_COUNT,
                    "data": "sklearn.datasets.load_digits, seed 1234 split"}, indent=2) + "\n"
    )
    np.savez_compressed(
        HERE / "digits.npz",
        calibration__image=x_train[:CALIBRATION_COUNT],
        test__image=x_test,
        test__labels=y_test,
    )

    (HERE / "digits_labels.txt").write_text("".join(f"{digit}\n" for digit in range(10)))

    keras.utils.set_random_seed(SEED)
    mlp = build_mlp()
    train(mlp, x_train.reshape(len(x_train), 64), y_train)
    mlp.save(HERE / "digits_mlp.h5")
    saved = HERE / "digits_mlp_savedmodel"
    shutil.rmtree(saved, ignore_errors=True)
    mlp.export(str(saved), verbose=False)
    mlp_accuracy = accuracy(mlp, x_test.reshape(len(x_test), 64), y_test)
    import make_onnx_samples  # the ONNX twin of digits_cnn.keras, with its trained weights in NCHW

    make_onnx_samples.main()
    try:
        import torch  # noqa: F401 - the .pt2 sample needs the edgeexport[torch] extra
    except ImportError:
        print("torch is not installed: digits_cnn.pt2 not regenerated (pip install 'edgeexport[torch]')")
    else:
        import make_torch_samples

        make_torch_samples.main()
    print(f"digits_cnn test accuracy {cnn_accuracy:.4f}, digits_mlp {mlp_accuracy:.4f} "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
