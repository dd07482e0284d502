"""Error metrics between a reference output and an artifact's output (numpy only, no framework import).

All arrays have the samples on axis 0. Errors are in the output's own units; cosine similarity is computed per
sample (flattened) and averaged, with the worst sample kept too; SQNR is over the whole batch in dB:
``10 * log10(sum(ref**2) / sum((ref - out)**2))`` (``inf`` when the outputs are identical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Relative error divides by |ref| + this fraction of max|ref|: near-zero reference values (softmax tails)
# would otherwise turn a 1e-9 absolute error into an unbounded relative one.
RELATIVE_FLOOR = 1e-3
TOP_K = 5
# A sample whose reference top-1 and top-2 scores differ by at most this fraction of its largest |score| (about
# fp16's resolution, 2**-10) has no meaningful arg-max: any artifact may flip it. Top-1 agreement leaves it out.
TIE_RELATIVE = 1e-3
# A reference output that varies across samples by at most this fraction of its largest |value| does not depend
# on the input (an untrained softmax head gives 1/classes everywhere): comparing with it proves little.
CONSTANT_RELATIVE = 1e-4


@dataclass(frozen=True)
class ClassifierMetrics:
    """Agreement of class scores (2-D outputs, >= 2 classes).

    ``top1_agreement``: fraction (0..1) of samples whose arg-max matches, over the samples whose reference
    top-1 and top-2 are not tied within ``TIE_RELATIVE`` (``top1_ignored`` counts the tied ones; None when every
    sample is tied); ``top5_overlap``: mean fraction of
    the reference's top-5 classes found in the artifact's top-5 (None with 5 classes or fewer). With labels:
    ``reference_accuracy``/``artifact_accuracy`` as fractions and ``accuracy_drop_points`` in points (0-100;
    positive when the artifact is worse).
    """

    classes: int
    top1_agreement: float | None
    top5_overlap: float | None = None
    reference_accuracy: float | None = None
    artifact_accuracy: float | None = None
    accuracy_drop_points: float | None = None
    top1_ignored: int = 0


@dataclass(frozen=True)
class OutputMetrics:
    """Every metric for one output. Units: output units for the absolute errors, dB for SQNR."""

    samples: int
    max_abs: float
    mean_abs: float
    max_rel: float
    rmse: float
    cosine: float
    cosine_worst: float
    sqnr_db: float
    classifier: ClassifierMetrics | None = None

    def value(self, metric: str) -> float | None:
        """A metric by its tolerance name: max_abs, mean_abs, cosine, sqnr_db, top1_agreement, accuracy_drop."""
        if metric == "top1_agreement":
            return self.classifier.top1_agreement if self.classifier else None
        if metric == "accuracy_drop":
            return self.classifier.accuracy_drop_points if self.classifier else None
        value = getattr(self, metric, None)
        return None if value is None else float(value)


def cosine_per_sample(reference: NDArray[Any], actual: NDArray[Any]) -> NDArray[Any]:
    """Cosine similarity of each sample's flattened values; 1.0 when both are all zeros, 0.0 when one is."""
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    out = actual.reshape(len(actual), -1).astype(np.float64)
    dot = np.sum(ref * out, axis=1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(out, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, np.clip(cos, -1.0, 1.0))


def sqnr_db(reference: NDArray[Any], actual: NDArray[Any]) -> float:
    """Signal-to-quantization-noise ratio in dB over all values; inf when identical, -inf for a zero signal."""
    ref = reference.astype(np.float64)
    noise = float(np.sum((ref - actual.astype(np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def looks_like_classifier(shape: tuple[int, ...]) -> bool:
    """Class scores: a 2-D (samples, classes) output with at least 2 classes."""
    return len(shape) == 2 and shape[1] >= 2


def classifier_metrics(reference: NDArray[Any], actual: NDArray[Any], labels: NDArray[Any] | None = None) -> ClassifierMetrics:
    """Top-1 agreement, top-5 overlap and, with integer ``labels`` (one per sample), accuracies and their delta."""
    classes = int(reference.shape[1])
    ref_top1 = np.argmax(reference, axis=1)
    out_top1 = np.argmax(actual, axis=1)
    tied = near_ties(reference)
    top1 = float(np.mean((ref_top1 == out_top1)[~tied])) if not tied.all() else None
    top5 = None
    if classes > TOP_K:
        ref_top = np.argsort(-reference, axis=1)[:, :TOP_K]
        out_top = np.argsort(-actual, axis=1)[:, :TOP_K]
        top5 = float(np.mean([len(set(r) & set(o)) / TOP_K for r, o in zip(ref_top, out_top)]))
    ref_acc = out_acc = drop = None
    if labels is not None:
        from edgeexport.datachecks import check_label_range

        check_label_range(labels, classes)
    if labels is not None and len(labels) == len(reference) and labels.size:
        ref_acc = float(np.mean(ref_top1 == labels))
        out_acc = float(np.mean(out_top1 == labels))
        drop = round((ref_acc - out_acc) * 100.0, 6)
    return ClassifierMetrics(classes, top1, top5, ref_acc, out_acc, drop, int(tied.sum()))


def near_ties(reference: NDArray[Any]) -> NDArray[Any]:
    """Per sample of (samples, classes) scores: whether top-1 and top-2 differ by <= ``TIE_RELATIVE`` of the
    sample's largest |score|."""
    top2 = -np.sort(-reference.astype(np.float64), axis=1)[:, :2]
    scale = np.max(np.abs(reference.astype(np.float64)), axis=1)
    return np.asarray((top2[:, 0] - top2[:, 1]) <= TIE_RELATIVE * scale)


def input_independent(reference: NDArray[Any]) -> bool:
    """Whether a reference output (samples first, >= 2 samples) is the same for every sample within
    ``CONSTANT_RELATIVE`` of its largest |value|."""
    if len(reference) < 2 or reference.size == 0:
        return False
    ref = reference.astype(np.float64)
    spread = float(np.max(np.max(ref, axis=0) - np.min(ref, axis=0)))
    return spread <= CONSTANT_RELATIVE * float(np.max(np.abs(ref)))


def compute(reference: NDArray[Any], actual: NDArray[Any], labels: NDArray[Any] | None = None) -> OutputMetrics:
    """All metrics of ``actual`` against ``reference`` (same shape, samples first)."""
    if reference.shape != actual.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, artifact {actual.shape}")
    ref = reference.astype(np.float64)
    out = actual.astype(np.float64)
    diff = np.abs(ref - out)
    if diff.size == 0:
        raise ValueError("empty output")
    floor = RELATIVE_FLOOR * float(np.max(np.abs(ref))) or 1e-12
    cos = cosine_per_sample(ref, out)
    classifier = classifier_metrics(ref, out, labels) if looks_like_classifier(ref.shape) else None
    return OutputMetrics(
        samples=int(ref.shape[0]) if ref.ndim else 1,
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        max_rel=float(np.max(diff / (np.abs(ref) + floor))),
        rmse=float(np.sqrt(np.mean(diff**2))),
        cosine=float(np.mean(cos)),
        cosine_worst=float(np.min(cos)),
        sqnr_db=sqnr_db(ref, out),
        classifier=classifier,
    )
