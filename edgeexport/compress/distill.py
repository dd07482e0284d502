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

import hashlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import DataError, ModelFormatError, OutputPathError, UnsupportedError

# (epoch index from 1, epochs planned, train loss, held-out loss)
EpochCallback = Callable[[int, int, float, float], None]


@dataclass(frozen=True)
class DistillConfig:
    """Training settings. ``epochs`` upper bound (default 300), ``temperature`` T (default 4.0), ``alpha`` weight of
    the soft loss when labels exist (0..1, default 0.7), ``batch_size`` (32), ``learning_rate`` (Adam, initial rate
    of a cosine decay over the planned steps, 5e-3), ``patience`` epochs without held-out improvement before
    stopping (25), ``holdout`` share of samples kept out for early stopping (0..1, default 0.15), ``mixup`` adds a
    blended copy of every batch (default on), ``seed`` (0)."""

    epochs: int = 300
    temperature: float = 4.0
    alpha: float = 0.7
    batch_size: int = 32
    learning_rate: float = 5e-3
    patience: int = 25
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


def _is_probability(array: NDArray[Any]) -> bool:
    """Rows that are non-negative and sum to 1 (a softmax output)."""
    if array.ndim < 2 or array.shape[-1] < 2:
        return False
    return bool(np.all(array >= -1e-6) and np.allclose(array.sum(axis=-1), 1.0, atol=1e-3))


def output_kinds(teacher_outputs: list[NDArray[Any]], has_labels: bool) -> tuple[str, ...]:
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


def distill_student(student: Any, teacher: Any, inputs: Mapping[str, NDArray[Any]], input_names: tuple[str, ...],
                    *, labels: NDArray[Any] | None = None, config: DistillConfig = DistillConfig(),
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
    held = max(1, round(config.holdout * count))
    val_idx, train_idx = np.sort(order[:held]), np.sort(order[held:])

    def pack(xs: list[Any]) -> Any:
        return xs if len(xs) > 1 else xs[0]

    teacher_val = _as_list(teacher(pack([f[val_idx] for f in feeds]), training=False))
    kinds = output_kinds([np.asarray(t) for t in teacher_val], labels is not None)
    temperature, alpha = float(config.temperature), float(config.alpha)
    steps = config.epochs * -(-(count - held) // config.batch_size) * (2 if config.mixup else 1)
    # Cosine decay to zero over the planned steps: the last epochs refine instead of bouncing at a high rate.
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(config.learning_rate, max(1, steps)))

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

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
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


def _expand(weights: NDArray[Any], like: NDArray[Any]) -> NDArray[Any]:
    return weights.reshape((-1,) + (1,) * (like.ndim - 1))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


@dataclass(frozen=True)
class ModelSide:
    """One side of the comparison. ``accuracy`` (0..1) on the evaluation split when it has labels, else None;
    ``agreement`` is the share of evaluation samples whose arg-max matches the teacher's (1.0 for the teacher);
    ``file_bytes`` is the size of the .keras/.h5 file; ``latency_ms`` the simulated p50 of its fp32 artifact on
    ``target`` for the chosen device (None without a device)."""

    path: Path
    params: int
    file_bytes: int
    accuracy: float | None
    agreement: float | None
    latency_ms: float | None = None
    target: str | None = None


@dataclass(frozen=True)
class DistillSummary:
    """What ``edgeexport distill`` did: both models, the training result, the splits used (``eval_split`` is
    "test", or "train" when the data has no test split), whether labels were mixed in, the device the latencies
    are for, and the sha256 of the student's weights (stable across runs with the same seed)."""

    teacher: ModelSide
    student: ModelSide
    result: DistillResult
    out: Path
    weights_sha256: str
    train_split: str
    eval_split: str
    eval_samples: int
    labels_used: bool
    device: str | None = None


def weights_sha256(model: Any) -> str:
    """sha256 over the model's weight arrays (shapes, dtypes and bytes) in layer order."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_pair(teacher: Any, student: Any, student_name: str) -> None:
    """ModelFormatError (exit 3) unless ``student`` takes the teacher's inputs and gives outputs of the same shapes
    (batch axis excepted), in the same order."""
    def shapes(tensors: Any) -> list[tuple[Any, ...]]:
        return [tuple(t.shape)[1:] for t in (tensors if isinstance(tensors, list | tuple) else [tensors])]

    for what in ("inputs", "outputs"):
        want, have = shapes(getattr(teacher, what)), shapes(getattr(student, what))
        if len(want) != len(have):
            raise ModelFormatError(f"student {student_name} has {len(have)} {what}, the teacher has {len(want)}",
                                   hint=f"the student must take and give what the teacher does: {what} {want}")
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            if w != h:
                raise ModelFormatError(f"student {student_name} {what[:-1]} {i} has shape (N, "
                                       f"{', '.join(map(str, h))}), the teacher's is (N, {', '.join(map(str, w))})")


def _split_names(path: Path) -> set[str]:
    from edgeexport.verify.inputs import SPLIT_SEPARATOR, read_npz

    return {key.split(SPLIT_SEPARATOR)[0] for key in read_npz(path) if SPLIT_SEPARATOR in key}


def _keras(path: Path, role: str, unsafe: bool) -> Any:
    from edgeexport.sources import load, open_source
    from edgeexport.sources.keras import KerasModel
    from edgeexport.types import LoadOptions

    loaded = load(open_source(path, LoadOptions(unsafe_deserialization=unsafe)))
    if not isinstance(loaded, KerasModel):
        raise UnsupportedError(f"the {role} {path.name} is a {loaded.source.format} model; distill trains Keras models",
                               hint=f"give a .keras or .h5 {role}")
    return loaded


def _first_output(model: Any, feeds: list[NDArray[Any]]) -> NDArray[Any]:
    out = model.predict(feeds if len(feeds) > 1 else feeds[0], verbose=0, batch_size=256)
    return np.asarray(out[0] if isinstance(out, list | tuple) else out)


def _latency(path: Path, device: str | None, work: Path) -> tuple[float | None, str | None]:
    if device is None:
        return None, None
    from edgeexport.api import ConvertOptions, VerifyOptions, convert

    options = ConvertOptions(device=device, verify=VerifyOptions(enabled=False), write_report=False)
    report = convert(path, work / path.stem, options)
    entry = report.artifacts[0]
    return (entry.estimates[0].p50_ms if entry.estimates else None), entry.artifact.target


def run_distill(teacher_path: Path, student_path: Path, data_path: Path, out: Path, *,
                config: DistillConfig = DistillConfig(), device: str | None = None, unsafe: bool = False,
                on_epoch: EpochCallback | None = None, say: Callable[[str], None] | None = None) -> DistillSummary:
    """Distil the Keras ``student_path`` against ``teacher_path`` on ``data_path`` (.npz: the ``train`` split, else
    ``calibration``, else all arrays; labels mixed in when that split has ``labels``), save it to ``out`` (.keras),
    and compare both on the ``test`` split (else the training data). With ``device``, both are converted to fp32 in
    a temporary directory and simulated there. Exit 3 for bad inputs or a mismatched student, 4 for non-Keras."""
    from edgeexport.verify.inputs import load_npz

    tell = say or (lambda _message: None)
    if out.suffix != ".keras":
        raise OutputPathError(f"--out must name a .keras file, got {out}")
    tell(f"loading {teacher_path.name} and {student_path.name}")
    teacher = _keras(teacher_path, "teacher", unsafe)
    student = _keras(student_path, "student", unsafe)
    check_pair(teacher.model, student.model, student_path.name)
    specs = teacher.summary.inputs
    splits = _split_names(data_path)
    train_split = "train" if "train" in splits else "calibration" if "calibration" in splits else "all"
    train = load_npz(data_path, specs, split=train_split, what="distillation data")
    eval_split = "test" if "test" in splits else train_split
    evaluation = load_npz(data_path, specs, split=eval_split, what="evaluation data") if eval_split != train_split \
        else train
    tell(f"distilling on {train.count} samples ({train_split} split), up to {config.epochs} epochs")
    result = distill_student(student.model, teacher.model, train.arrays, teacher.input_names, labels=train.labels,
                             config=config, on_epoch=on_epoch)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        student.model.save(out)
    except OSError as err:
        raise OutputPathError(f"cannot write {out}: {err.strerror or err}") from err
    feeds = [evaluation.arrays[name] for name in teacher.input_names]
    t_out, s_out = _first_output(teacher.model, feeds), _first_output(student.model, feeds)
    labels = evaluation.labels

    def accuracy(pred: NDArray[Any]) -> float | None:
        return float(np.mean(np.argmax(pred, axis=-1) == labels)) if labels is not None and pred.ndim == 2 else None

    agreement = float(np.mean(np.argmax(s_out, -1) == np.argmax(t_out, -1))) if t_out.ndim == 2 else None
    with tempfile.TemporaryDirectory(prefix="edgeexport-distill-") as tmp:
        tell("simulating both models" + (f" on {device}" if device else ""))
        t_latency, t_target = _latency(teacher_path, device, Path(tmp) / "teacher")
        s_latency, s_target = _latency(out, device, Path(tmp) / "student")
    return DistillSummary(
        teacher=ModelSide(teacher_path, int(teacher.model.count_params()), _bytes(teacher_path), accuracy(t_out),
                          1.0 if agreement is not None else None, t_latency, t_target),
        student=ModelSide(out, int(student.model.count_params()), _bytes(out), accuracy(s_out), agreement,
                          s_latency, s_target),
        result=result, out=out, weights_sha256=weights_sha256(student.model), train_split=train_split,
        eval_split=eval_split, eval_samples=evaluation.count, labels_used=train.labels is not None, device=device,
    )


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
