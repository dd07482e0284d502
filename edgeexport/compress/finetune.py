"""Recover what pruning costs by distillation: train the pruned model to reproduce the original model's outputs
on the calibration samples. No labels are needed, and pruned weights stay zero (masks are re-applied after
every step), so sparsity and removed channels survive.

Deterministic: fixed seed, unshuffled batches and TensorFlow's deterministic ops, so the same model and data give
the same weights and hence byte-identical artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_EPOCHS = 30
DEFAULT_BATCH = 32
DEFAULT_LEARNING_RATE = 1e-3
SEED = 0


@dataclass(frozen=True)
class FinetuneReport:
    """What distillation did: epochs run, samples used, and the mean squared output error against the original
    model on those samples before and after (output units squared)."""

    epochs: int
    samples: int
    mse_before: float
    mse_after: float


def distill(
    student: Any,
    teacher: Any,
    inputs: Mapping[str, NDArray[Any]],
    input_names: tuple[str, ...],
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> FinetuneReport:
    """Train ``student`` (a pruned copy of ``teacher``, modified in place) to match ``teacher``'s outputs.

    ``inputs`` maps input names to arrays with a leading sample axis; ``epochs`` defaults to ``DEFAULT_EPOCHS``.
    Kernels that are zero before training are held at zero.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    feeds = [np.asarray(inputs[name]) for name in input_names]
    x = feeds if len(feeds) > 1 else feeds[0]
    targets = teacher.predict(x, batch_size=batch_size, verbose=0)
    masks = [(w, (w.numpy() != 0).astype(w.dtype)) for w in _kernels(student)]

    class KeepPruned(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            for weight, mask in masks:
                weight.assign(weight.numpy() * mask)

    before = _mse(student.predict(x, batch_size=batch_size, verbose=0), targets)
    student.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    student.fit(x, targets, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0, callbacks=[KeepPruned()])
    after = _mse(student.predict(x, batch_size=batch_size, verbose=0), targets)
    return FinetuneReport(epochs, len(feeds[0]), before, after)


def _kernels(model: Any) -> list[Any]:
    kernels = []
    for layer in model.layers:
        for name in ("kernel", "depthwise_kernel"):
            weight = getattr(layer, name, None)
            if weight is not None and hasattr(weight, "assign"):
                kernels.append(weight)
    return kernels


def _mse(predicted: Any, expected: Any) -> float:
    pairs = zip(predicted, expected) if isinstance(predicted, list | tuple) else [(predicted, expected)]
    return float(np.mean([np.mean((np.asarray(p) - np.asarray(e)) ** 2) for p, e in pairs]))
