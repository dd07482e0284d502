"""Knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015): train a
student Keras model to reproduce a teacher's outputs on unlabelled inputs.

Loss per output: for a classifier (the teacher's output is a probability vector, or labels are given) the
KL divergence between the teacher's and the student's softmax at temperature ``T``, scaled by ``T**2`` (so its
gradients keep their size as ``T`` changes, as in the paper); when labels are given, ``alpha`` of that plus
``1 - alpha`` of the cross-entropy with the labels at ``T = 1``. A probability output is turned back into logits
with ``log`` (softmax(log p / T) is p tempered). Any other output is matched by mean squared error.

Transfer set: each batch is the data batch plus a mixup copy (pairs of samples blended with a Beta(0.4, 0.4)
weight) that the teacher labels on the fly; with a few hundred samples this gives the student many more points
of the teacher's function to match. Early stopping watches the loss on a held-out share of the samples and
restores the best epoch's weights. Deterministic: seeded numpy shuffling and mixing, seeded Keras initialisation,
TensorFlow's deterministic ops, and a single-threaded step order, so the same inputs give the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeexport.errors import DataError

# (epoch index from 1, epochs planned, train loss, held-out loss)
EpochCallback = Callable[[int, int, float, float], None]


@dataclass(frozen=True)
class DistillConfig:
    """Training settings. ``epochs`` upper bound (default 60), ``temperature`` T (default 4.0), ``alpha`` weight of
    the soft loss when labels exist (0..1, default 0.7), ``batch_size`` (32), ``learning_rate`` (Adam, 2e-3),
    ``patience`` epochs without held-out improvement before stopping (8), ``holdout`` share of samples kept out for
    early stopping (0..1, default 0.15), ``mixup`` adds a blended copy of every batch (default on), ``seed`` (0)."""

    epochs: int = 60
    temperature: float = 4.0
    alpha: float = 0.7
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 8
    holdout: float = 0.15
    mixup: bool = True
    seed: int = 0


@dataclass(frozen=True)
class DistillResult:
    """What training did: epochs run, the best epoch (whose weights the student keeps), samples used for training
    and held out, per-epoch (train loss, held-out loss), and which loss each output used."""

    epochs_run: int
    best_epoch: int
    train_samples: int
    holdout_samples: int
    history: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    losses: tuple[str, ...] = ()

    @property
    def best_holdout_loss(self) -> float:
        return self.history[self.best_epoch - 1][1] if self.history else float("nan")


def _is_probability(array: np.ndarray) -> bool:
    """Rows that are non-negative and sum to 1 (a softmax output)."""
    if array.ndim < 2 or array.shape[-1] < 2:
        return False
    return bool(np.all(array >= -1e-6) and np.allclose(array.sum(axis=-1), 1.0, atol=1e-3))


def output_kinds(teacher_outputs: list[np.ndarray], has_labels: bool) -> tuple[str, ...]:
    """Per output: ``"probs"`` (softmax output), ``"logits"`` (a 2-D output trained with labels) or ``"mse"``."""
    kinds = []
    for i, out in enumerate(teacher_outputs):
        if _is_probability(out):
            kinds.append("probs")
        elif has_labels and i == 0 and out.ndim == 2 and out.shape[-1] > 1:
            kinds.append("logits")
        else:
            kinds.append("mse")
    return tuple(kinds)


def distill_student(student: Any, teacher: Any, inputs: Mapping[str, np.ndarray], input_names: tuple[str, ...],
                    *, labels: np.ndarray | None = None, config: DistillConfig = DistillConfig(),
                    on_epoch: EpochCallback | None = None) -> DistillResult:
    """Train ``student`` (modified in place) to mimic ``teacher`` on ``inputs`` (arrays with a leading sample axis
    keyed by input name, fed in ``input_names`` order); ``labels`` (integers, one per sample) apply to the first
    output. Calls ``on_epoch`` after every epoch. Raises DataError (exit 3) with fewer than 4 samples."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    feeds = [np.asarray(inputs[name], dtype=np.float32) for name in input_names]
    count = len(feeds[0])
    if count < 4:
        raise DataError(f"distillation needs at least 4 samples, got {count}")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(count)
    held = max(1, int(round(config.holdout * count)))
    val_idx, train_idx = np.sort(order[:held]), np.sort(order[held:])
    pack = (lambda xs: xs if len(xs) > 1 else xs[0])
    teacher_val = _as_list(teacher(pack([f[val_idx] for f in feeds]), training=False))
    kinds = output_kinds([np.asarray(t) for t in teacher_val], labels is not None)
    temperature, alpha = float(config.temperature), float(config.alpha)
    optimizer = keras.optimizers.Adam(config.learning_rate)

    def loss_fn(xs: list[Any], y: Any, has_y: bool, training: bool) -> Any:
        targets = _as_list(teacher(pack(xs), training=False))
        outputs = _as_list(student(pack(xs), training=training))
        total = tf.constant(0.0)
        for i, (kind, t_out, s_out) in enumerate(zip(kinds, targets, outputs, strict=True)):
            if kind == "mse":
                total += tf.reduce_mean(tf.square(tf.cast(s_out, tf.float32) - tf.cast(t_out, tf.float32)))
                continue
            t_logits = tf.math.log(tf.clip_by_value(t_out, 1e-7, 1.0)) if kind == "probs" else t_out
            s_logits = tf.math.log(tf.clip_by_value(s_out, 1e-7, 1.0)) if kind == "probs" else s_out
            soft_t = tf.nn.softmax(t_logits / temperature)
            log_s = tf.nn.log_softmax(s_logits / temperature)
            kl = tf.reduce_mean(tf.reduce_sum(soft_t * (tf.math.log(tf.clip_by_value(soft_t, 1e-12, 1.0)) - log_s),
                                              axis=-1)) * temperature ** 2
            if has_y and i == 0:
                hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, s_logits))
                total += alpha * kl + (1.0 - alpha) * hard
            else:
                total += kl
        return total

    @tf.function(reduce_retracing=True)  # type: ignore[misc]
    def train_step(xs: list[Any], y: Any, has_y: bool) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(xs, y, has_y, True)
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply_gradients(zip(grads, student.trainable_variables))
        return loss

    dummy_y = np.zeros(count, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    history: list[tuple[float, float]] = []
    best, best_epoch, best_weights, stale = float("inf"), 0, student.get_weights(), 0
    for epoch in range(1, config.epochs + 1):
        shuffled = train_idx[rng.permutation(len(train_idx))]
        losses = []
        for start in range(0, len(shuffled), config.batch_size):
            batch = shuffled[start:start + config.batch_size]
            xs = [f[batch] for f in feeds]
            losses.append(float(train_step(xs, dummy_y[batch], labels is not None)))
            if config.mixup and len(batch) > 1:
                lam = rng.beta(0.4, 0.4, size=len(batch)).astype(np.float32)
                partner = batch[rng.permutation(len(batch))]
                mixed = [(_expand(lam, f) * f[batch] + (1 - _expand(lam, f)) * f[partner]).astype(np.float32)
                         for f in feeds]
                # Mixed inputs have no label: only the teacher's soft targets apply to them.
                train_step(mixed, dummy_y[batch], False)
        val = float(loss_fn([f[val_idx] for f in feeds], dummy_y[val_idx], labels is not None, False))
        history.append((float(np.mean(losses)), val))
        if on_epoch is not None:
            on_epoch(epoch, config.epochs, history[-1][0], val)
        if val < best - 1e-6:
            best, best_epoch, best_weights, stale = val, epoch, student.get_weights(), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    student.set_weights(best_weights)
    return DistillResult(len(history), best_epoch, len(train_idx), len(val_idx), tuple(history), kinds)


def _expand(weights: np.ndarray, like: np.ndarray) -> np.ndarray:
    return weights.reshape((-1,) + (1,) * (like.ndim - 1))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
