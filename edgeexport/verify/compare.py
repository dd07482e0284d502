"""Comparing an artifact's outputs with the reference's, and judging them against a ``Tolerance``.

Outputs are matched by name, then by shape (a guess, recorded in the result), then by position (also a
guess). Axis permutations are applied only when the artifact records them (``Artifact.permutations``):
a layout is never guessed. Each limit set in the tolerance is one ``Check``; a check whose metric does not
apply (top-1 agreement of a non-classifier output, accuracy without labels) is skipped, not passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import DataError
from edgeexport.serial import plain
from edgeexport.types import Permutation, TensorSpec
from edgeexport.verify.metrics import OutputMetrics, compute, input_independent

# (tolerance field, metric name, direction, short label). "min" limits are lower bounds, "max" upper bounds.
CHECKS: tuple[tuple[str, str, str, str], ...] = (
    ("max_abs", "max_abs", "max", "max_abs"),
    ("mean_abs", "mean_abs", "max", "mean_abs"),
    ("cosine_min", "cosine", "min", "cosine"),
    ("sqnr_db_min", "sqnr_db", "min", "sqnr"),
    ("top1_agreement_min", "top1_agreement", "min", "top1"),
    ("accuracy_drop_max", "accuracy_drop", "max", "acc_drop"),
)


def format_value(metric: str, value: float) -> str:
    """A metric value the way a person reads it: 4 decimals for similarities, dB with 1, errors in %.3g."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if metric in ("cosine", "top1_agreement"):
        return f"{value:.4f}"
    if metric == "sqnr_db":
        return f"{value:.1f} dB"
    if metric == "accuracy_drop":
        return f"{value:.2f} pts"
    return f"{value:.3g}"


@dataclass(frozen=True)
class Check:
    """One limit applied to one output. ``passed`` is None when the metric does not apply (skipped).

    ``severity`` says how far past the limit a failing value is, on a common scale (1.0 = at the limit):
    error ratio for absolute errors and accuracy drop, ``(1 - value) / (1 - limit)`` for similarities and
    the noise-power ratio ``10 ** ((limit - value) / 10)`` for SQNR. The worst failing check has the largest.
    """

    output: str
    metric: str
    label: str
    direction: str
    limit: float
    value: float | None
    passed: bool | None

    @property
    def severity(self) -> float:
        if self.value is None or self.passed:
            return 0.0
        value, limit = self.value, self.limit
        if self.metric == "sqnr_db":
            return math.inf if value == -math.inf else 10 ** ((limit - value) / 10)
        if self.metric in ("cosine", "top1_agreement"):
            return (1 - value) / max(1 - limit, 1e-12)
        return value / limit if limit > 0 else math.inf

    def line(self) -> str:
        """``"probs: cosine 0.9812 < 0.999"``."""
        shown = "n/a" if self.value is None else format_value(self.metric, self.value)
        relation = "<" if self.direction == "min" else ">"
        if self.passed:
            relation = ">=" if self.direction == "min" else "<="
        return f"{self.output}: {self.label} {shown} {relation} {self.limit:.10g}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(self)
        return data


@dataclass(frozen=True)
class OutputComparison:
    """One reference output against its artifact output. ``matched_by`` is ``"name"``, ``"shape"`` or
    ``"position"``; ``error`` is set (and ``metrics`` None) when the two cannot be compared at all."""

    name: str
    artifact_name: str
    matched_by: str
    metrics: OutputMetrics | None
    checks: tuple[Check, ...]
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed is not False for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "artifact_name": self.artifact_name,
            "matched_by": self.matched_by,
            "passed": self.passed,
            "error": self.error,
            "metrics": plain(self.metrics) if self.metrics else None,
            "checks": [c.to_dict() for c in self.checks],
            "warnings": list(self.warnings),
        }



def judge(name: str, metrics: OutputMetrics, tolerance: Tolerance) -> tuple[Check, ...]:
    """One Check per limit set in ``tolerance``."""
    checks = []
    for field, metric, direction, label in CHECKS:
        limit = getattr(tolerance, field)
        if limit is None:
            continue
        value = metrics.value(metric)
        passed = None if value is None else (value >= limit if direction == "min" else value <= limit)
        checks.append(Check(name, metric, label, direction, float(limit), value, passed))
    return tuple(checks)


def worst_failure(comparisons: Sequence[OutputComparison]) -> str | None:
    """The one line naming the worst failing metric and its output, or None when everything passed."""
    errors = [f"{c.name}: {c.error}" for c in comparisons if c.error]
    if errors:
        return errors[0]
    failing = [check for c in comparisons for check in c.checks if check.passed is False]
    if not failing:
        return None
    return max(failing, key=lambda check: check.severity).line()


def apply_permutation(array: NDArray[Any], axes: tuple[int, ...]) -> NDArray[Any]:
    """``artifact = reference.transpose(axes)`` (see ``edgeexport.types.Permutation``)."""
    return np.ascontiguousarray(np.transpose(array, axes))


def _permutation(permutations: Sequence[Permutation], kind: str, name: str) -> tuple[int, ...] | None:
    for perm in permutations:
        if perm.kind == kind and perm.tensor == name:
            return perm.axes
    return None


def artifact_feeds(
    reference_feeds: Mapping[str, NDArray[Any]],
    artifact_inputs: Sequence[TensorSpec],
    permutations: Sequence[Permutation] = (),
) -> tuple[dict[str, NDArray[Any]], tuple[str, ...]]:
    """Reference-layout inputs renamed and transposed for the artifact; returns (feeds, guesses made)."""
    permuted = {}
    for name, array in reference_feeds.items():
        axes = _permutation(permutations, "input", name)
        permuted[name] = apply_permutation(array, axes) if axes else array
    pairs, guesses = match(
        [(n, tuple(a.shape[1:])) for n, a in permuted.items()],
        [(s.name, tuple(s.shape[1:])) for s in artifact_inputs],
        kind="input",
    )
    declared = {s.name: tuple(s.shape[1:]) for s in artifact_inputs}
    for ref, art, _ in pairs:
        # LiteRT would silently resize an input to whatever it is fed: a model converted from something else
        # must be refused here, not flattened into a meaningless comparison.
        if not _same(tuple(permuted[ref].shape[1:]), declared[art]):
            raise DataError(
                f"artifact input '{art}' takes {_dims(declared[art])} per sample but the reference's input '{ref}' "
                f"is {_dims(permuted[ref].shape[1:])}",
                hint="is the artifact converted from this model? Layouts change only where the artifact records it",
            )
    return {art: permuted[ref] for ref, art, _ in pairs}, guesses


def _dims(shape: tuple[Any, ...]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) or "a scalar"


def match(
    reference: Sequence[tuple[str, tuple[Any, ...]]],
    artifact: Sequence[tuple[str, tuple[Any, ...]]],
    *,
    kind: str = "output",
) -> tuple[list[tuple[str, str, str]], tuple[str, ...]]:
    """Pair (name, trailing shape) entries: by name, then by a unique shape, then by position.

    Returns ``[(reference name, artifact name, how)]`` and human-readable notes for every guess.
    """
    pairs: list[tuple[str, str, str]] = []
    guesses: list[str] = []
    art_left = dict(artifact)
    ref_left = []
    for name, shape in reference:
        if name in art_left:
            pairs.append((name, name, "name"))
            del art_left[name]
        else:
            ref_left.append((name, shape))
    still = []
    for name, shape in ref_left:
        same_ref = [n for n, s in ref_left if _same(s, shape)]
        same_art = [n for n, s in art_left.items() if _same(s, shape)]
        if len(same_ref) == 1 and len(same_art) == 1:
            pairs.append((name, same_art[0], "shape"))
            guesses.append(f"{kind} '{name}' matched to artifact {kind} '{same_art[0]}' by shape")
            del art_left[same_art[0]]
        else:
            still.append(name)
    for name, art_name in zip(still, list(art_left)):
        pairs.append((name, art_name, "position"))
        guesses.append(f"{kind} '{name}' matched to artifact {kind} '{art_name}' by position")
    order = {n: i for i, (n, _) in enumerate(reference)}
    pairs.sort(key=lambda p: order[p[0]])
    return pairs, tuple(guesses)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def vacuity_warnings(name: str, reference: NDArray[Any], metrics: OutputMetrics) -> tuple[str, ...]:
    """What makes a comparison of this output prove less than it seems: a reference that ignores its input, or
    samples left out of top-1 agreement because the reference's two best classes tie."""
    found = []
    if input_independent(reference):
        found.append(f"{name}: the reference output is the same for every input ({len(reference)} samples), so this "
                     "check proves little: an artifact that ignores its input would pass it (untrained weights?)")
    cls = metrics.classifier
    if cls is not None and cls.top1_ignored:
        found.append(f"{name}: top-1 agreement ignores {cls.top1_ignored} of {metrics.samples} samples whose reference "
                     "top-1 and top-2 scores tie within numerical noise"
                     + ("; no sample is left, so it is not checked" if cls.top1_agreement is None else ""))
    return tuple(found)


def compare_outputs(
    reference: Mapping[str, NDArray[Any]],
    actual: Mapping[str, NDArray[Any]],
    tolerance: Tolerance,
    *,
    permutations: Sequence[Permutation] = (),
    labels: NDArray[Any] | None = None,
) -> tuple[tuple[OutputComparison, ...], tuple[str, ...]]:
    """Compare every reference output with its artifact output; returns (comparisons, guesses)."""
    permuted = {}
    for name, array in reference.items():
        axes = _permutation(permutations, "output", name)
        permuted[name] = apply_permutation(np.asarray(array), axes) if axes else np.asarray(array)
    pairs, guesses = match(
        [(n, tuple(a.shape[1:])) for n, a in permuted.items()],
        [(n, tuple(np.asarray(a).shape[1:])) for n, a in actual.items()],
    )
    results = []
    matched = {ref for ref, _, _ in pairs}
    for ref_name, art_name, how in pairs:
        ref = permuted[ref_name].astype(np.float32)
        out = np.asarray(actual[art_name]).astype(np.float32)
        if ref.shape != out.shape:
            error = f"shape {out.shape} in the artifact, {ref.shape} in the reference (no layout permutation recorded)"
            results.append(OutputComparison(ref_name, art_name, how, None, (), error))
            continue
        if not np.all(np.isfinite(out)):
            results.append(OutputComparison(ref_name, art_name, how, None, (), "artifact output has NaN or inf"))
            continue
        metrics = compute(ref, out, labels)
        results.append(OutputComparison(ref_name, art_name, how, metrics, judge(ref_name, metrics, tolerance),
                                        warnings=vacuity_warnings(ref_name, ref, metrics)))
    for name in permuted:
        if name not in matched:
            results.append(OutputComparison(name, "", "none", None, (), "no artifact output to compare with"))
    return tuple(results), guesses
